// Package observability checks the Grafana dashboard and the Prometheus alert
// rules shipped in deploy/ against the metrics the worker really registers.
//
// It carries a small PromQL parser: enough of the grammar (selectors,
// matchers, functions, aggregations with by/without, binary operators with
// on/ignoring/group_left/group_right, ranges, subqueries, offset and @) to
// know which metric every expression reads and which labels every result
// can carry. Nothing else catches a misspelled metric or label in a panel
// query: Prometheus answers an empty result, not an error.
package observability

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrSyntax is wrapped by every PromQL parse error.
var ErrSyntax = errors.New("promql syntax error")

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tNumber // numbers, durations and Grafana variables ($var, ${var})
	tString
	tPunct // ( ) { } [ ] , : @
	tOp    // binary and matcher operators
)

type token struct {
	kind tokKind
	val  string
	pos  int
}

func (t token) String() string {
	if t.kind == tEOF {
		return "end of input"
	}
	return fmt.Sprintf("%q at %d", t.val, t.pos)
}

func isIdentStart(r rune) bool {
	return r == '_' || r == ':' || r < utf8.RuneSelf && unicode.IsLetter(r)
}
func isIdentChar(r rune) bool { return isIdentStart(r) || r >= '0' && r <= '9' }

// lex splits a PromQL expression into tokens.
func lex(s string) ([]token, error) {
	var toks []token
	i, brackets := 0, 0
	for i < len(s) {
		c := rune(s[i])
		switch {
		case c == ':' && brackets > 0: // a subquery's step separator, not a name
			toks = append(toks, token{tPunct, ":", i})
			i++
		case unicode.IsSpace(c):
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			var b strings.Builder
			for ; j < len(s) && rune(s[j]) != c; j++ {
				if s[j] == '\\' && c != '`' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("%w: unterminated string at %d", ErrSyntax, i)
			}
			toks = append(toks, token{tString, b.String(), i})
			i = j + 1
		case c == '$':
			j := i + 1
			if j < len(s) && s[j] == '{' {
				k := strings.IndexByte(s[j:], '}')
				if k < 0 {
					return nil, fmt.Errorf("%w: unterminated ${ at %d", ErrSyntax, i)
				}
				j += k + 1
			} else {
				for j < len(s) && isIdentChar(rune(s[j])) && s[j] != ':' {
					j++
				}
			}
			if j == i+1 {
				return nil, fmt.Errorf("%w: lone $ at %d", ErrSyntax, i)
			}
			toks = append(toks, token{tNumber, s[i:j], i})
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i
			for j < len(s) && (isIdentChar(rune(s[j])) && s[j] != ':' || s[j] == '.') {
				if (s[j] == 'e' || s[j] == 'E') && j+1 < len(s) && (s[j+1] == '+' || s[j+1] == '-') &&
					!strings.HasPrefix(strings.ToLower(s[i:]), "0x") {
					j++
				}
				j++
			}
			toks = append(toks, token{tNumber, s[i:j], i})
			i = j
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdentChar(rune(s[j])) {
				j++
			}
			toks = append(toks, token{tIdent, s[i:j], i})
			i = j
		case strings.ContainsRune("(){}[],:@", c):
			switch c {
			case '[':
				brackets++
			case ']':
				brackets--
			}
			toks = append(toks, token{tPunct, string(c), i})
			i++
		default:
			op := ""
			for _, o := range []string{"==", "!=", "<=", ">=", "=~", "!~", "+", "-", "*", "/", "%", "^", "<", ">", "="} {
				if strings.HasPrefix(s[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				return nil, fmt.Errorf("%w: unexpected character %q at %d", ErrSyntax, c, i)
			}
			toks = append(toks, token{tOp, op, i})
			i += len(op)
		}
	}
	return append(toks, token{kind: tEOF, pos: len(s)}), nil
}

// AST nodes.
type (
	node interface{}

	numberLit struct{}
	stringLit struct{ val string }
	matcher   struct{ label, op, value string }
	selector  struct {
		name     string
		matchers []matcher
	}
	call struct {
		fn   string
		args []node
	}
	aggregate struct {
		op          string
		grouping    []string
		without     bool
		param, expr node
	}
	vectorMatching struct {
		on, ignoring          bool
		labels                []string
		groupLeft, groupRight bool
		include               []string
	}
	binary struct {
		op       string
		lhs, rhs node
		matching *vectorMatching
	}
	unary     struct{ expr node }
	rangeExpr struct{ expr node } // a matrix selector or a subquery
)

var aggregations = map[string]bool{
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "group": true,
	"stddev": true, "stdvar": true, "topk": true, "bottomk": true, "quantile": true,
	"count_values": true, "limitk": true, "limit_ratio": true,
}

// aggregationsWithParam take a parameter before the vector.
var aggregationsWithParam = map[string]bool{
	"topk": true, "bottomk": true, "quantile": true, "count_values": true, "limitk": true, "limit_ratio": true,
}

// functions lists the PromQL functions the parser accepts.
var functions = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time
		ceil changes clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year
		days_in_month deg delta deriv double_exponential_smoothing exp floor histogram_avg histogram_count
		histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour
		idelta increase irate label_join label_replace last_over_time ln log10 log2 mad_over_time max_over_time
		min_over_time minute month pi predict_linear present_over_time quantile_over_time rad rate resets round
		scalar sgn sin sinh sort sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time
		stdvar_over_time sum_over_time tan tanh time timestamp vector year`) {
		functions[f] = true
	}
}

var keywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "offset": true, "and": true, "or": true, "unless": true, "atan2": true,
}

// precedence of binary operators; higher binds tighter.
var precedence = map[string]int{
	"or": 1, "and": 2, "unless": 2,
	"==": 3, "!=": 3, "<=": 3, "<": 3, ">=": 3, ">": 3,
	"+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6,
}

type parser struct {
	toks []token
	i    int
}

// parse parses one PromQL expression.
func parse(s string) (node, error) {
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	n, err := p.expr(1)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errorf("unexpected %v after expression", t)
	}
	return n, nil
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrSyntax}, args...)...)
}

func (p *parser) is(kind tokKind, val string) bool {
	t := p.peek()
	return t.kind == kind && t.val == val
}

func (p *parser) expect(kind tokKind, val string) error {
	if t := p.next(); t.kind != kind || t.val != val {
		return p.errorf("expected %q, got %v", val, t)
	}
	return nil
}

// binaryOp returns the binary operator at the cursor, if any.
func (p *parser) binaryOp() (string, bool) {
	t := p.peek()
	if t.kind == tOp || t.kind == tIdent {
		if _, ok := precedence[t.val]; ok {
			return t.val, true
		}
	}
	return "", false
}

func (p *parser) expr(minPrec int) (node, error) {
	lhs, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		op, ok := p.binaryOp()
		if !ok || precedence[op] < minPrec {
			return lhs, nil
		}
		p.next()
		b := &binary{op: op, lhs: lhs}
		if p.is(tIdent, "bool") {
			p.next()
		}
		if t := p.peek(); t.kind == tIdent && (t.val == "on" || t.val == "ignoring") {
			p.next()
			b.matching = &vectorMatching{on: t.val == "on", ignoring: t.val == "ignoring"}
			if b.matching.labels, err = p.labelList(); err != nil {
				return nil, err
			}
			if t := p.peek(); t.kind == tIdent && (t.val == "group_left" || t.val == "group_right") {
				p.next()
				b.matching.groupLeft, b.matching.groupRight = t.val == "group_left", t.val == "group_right"
				if p.is(tPunct, "(") {
					if b.matching.include, err = p.labelList(); err != nil {
						return nil, err
					}
				}
			}
		}
		next := precedence[op] + 1
		if op == "^" {
			next = precedence[op] // right-associative
		}
		if b.rhs, err = p.expr(next); err != nil {
			return nil, err
		}
		lhs = b
	}
}

func (p *parser) unary() (node, error) {
	if t := p.peek(); t.kind == tOp && (t.val == "-" || t.val == "+") {
		p.next()
		e, err := p.expr(precedence["^"])
		if err != nil {
			return nil, err
		}
		return &unary{expr: e}, nil
	}
	return p.postfix()
}

func (p *parser) postfix() (node, error) {
	n, err := p.primary()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.is(tPunct, "["):
			p.next()
			if t := p.next(); t.kind != tNumber {
				return nil, p.errorf("expected a range duration, got %v", t)
			}
			if p.is(tPunct, ":") {
				p.next()
				if p.peek().kind == tNumber {
					p.next()
				}
			}
			if err := p.expect(tPunct, "]"); err != nil {
				return nil, err
			}
			n = &rangeExpr{expr: n}
		case p.is(tIdent, "offset"):
			p.next()
			if p.is(tOp, "-") {
				p.next()
			}
			if t := p.next(); t.kind != tNumber {
				return nil, p.errorf("expected an offset duration, got %v", t)
			}
		case p.is(tPunct, "@"):
			p.next()
			if t := p.next(); t.kind == tIdent && (t.val == "start" || t.val == "end") {
				if err := p.expect(tPunct, "("); err != nil {
					return nil, err
				}
				if err := p.expect(tPunct, ")"); err != nil {
					return nil, err
				}
			} else if t.kind != tNumber {
				return nil, p.errorf("expected a timestamp after @, got %v", t)
			}
		default:
			return n, nil
		}
	}
}

func (p *parser) primary() (node, error) {
	t := p.next()
	switch t.kind {
	case tNumber:
		return numberLit{}, nil
	case tString:
		return stringLit{t.val}, nil
	case tPunct:
		switch t.val {
		case "(":
			e, err := p.expr(1)
			if err != nil {
				return nil, err
			}
			return e, p.expect(tPunct, ")")
		case "{":
			p.i--
			return p.selector("")
		}
	case tIdent:
		lower := strings.ToLower(t.val)
		switch {
		case lower == "inf" || lower == "nan":
			return numberLit{}, nil
		case aggregations[t.val]:
			return p.aggregate(t.val)
		case keywords[t.val]:
			return nil, p.errorf("unexpected keyword %v", t)
		case p.is(tPunct, "("):
			if !functions[t.val] {
				return nil, p.errorf("unknown function %q at %d", t.val, t.pos)
			}
			args, err := p.args()
			if err != nil {
				return nil, err
			}
			return &call{fn: t.val, args: args}, nil
		default:
			return p.selector(t.val)
		}
	}
	return nil, p.errorf("unexpected %v", t)
}

func (p *parser) args() ([]node, error) {
	if err := p.expect(tPunct, "("); err != nil {
		return nil, err
	}
	var args []node
	for !p.is(tPunct, ")") {
		a, err := p.expr(1)
		if err != nil {
			return nil, err
		}
		args = append(args, a)
		if !p.is(tPunct, ",") {
			break
		}
		p.next()
	}
	return args, p.expect(tPunct, ")")
}

func (p *parser) aggregate(op string) (node, error) {
	a := &aggregate{op: op}
	grouping := func() error {
		if t := p.peek(); t.kind == tIdent && (t.val == "by" || t.val == "without") {
			if a.grouping != nil {
				return p.errorf("second grouping clause at %d", t.pos)
			}
			p.next()
			a.without = t.val == "without"
			labels, err := p.labelList()
			if err != nil {
				return err
			}
			a.grouping = append([]string{}, labels...)
		}
		return nil
	}
	if err := grouping(); err != nil {
		return nil, err
	}
	args, err := p.args()
	if err != nil {
		return nil, err
	}
	want := 1
	if aggregationsWithParam[op] {
		want = 2
	}
	if len(args) != want {
		return nil, p.errorf("%s takes %d argument(s), got %d", op, want, len(args))
	}
	a.expr = args[want-1]
	if want == 2 {
		a.param = args[0]
	}
	return a, grouping()
}

// labelList parses "(a, b, c)".
func (p *parser) labelList() ([]string, error) {
	if err := p.expect(tPunct, "("); err != nil {
		return nil, err
	}
	labels := []string{}
	for !p.is(tPunct, ")") {
		t := p.next()
		if t.kind != tIdent && t.kind != tString {
			return nil, p.errorf("expected a label name, got %v", t)
		}
		labels = append(labels, t.val)
		if !p.is(tPunct, ",") {
			break
		}
		p.next()
	}
	return labels, p.expect(tPunct, ")")
}

func (p *parser) selector(name string) (node, error) {
	s := &selector{name: name}
	if !p.is(tPunct, "{") {
		return s, nil
	}
	p.next()
	for !p.is(tPunct, "}") {
		l := p.next()
		if l.kind != tIdent && l.kind != tString {
			return nil, p.errorf("expected a label name, got %v", l)
		}
		op := p.next()
		if op.kind != tOp || !(op.val == "=" || op.val == "!=" || op.val == "=~" || op.val == "!~") {
			return nil, p.errorf("expected a matcher operator after %q, got %v", l.val, op)
		}
		v := p.next()
		if v.kind != tString {
			return nil, p.errorf("expected a quoted label value after %s%s, got %v", l.val, op.val, v)
		}
		s.matchers = append(s.matchers, matcher{l.val, op.val, v.val})
		if !p.is(tPunct, ",") {
			break
		}
		p.next()
	}
	if err := p.expect(tPunct, "}"); err != nil {
		return nil, err
	}
	if s.name == "" {
		for _, m := range s.matchers {
			if m.label == "__name__" && m.op == "=" {
				s.name = m.value
			}
		}
		if s.name == "" {
			return nil, p.errorf("selector without a metric name (an exact __name__ matcher is needed to check it)")
		}
	}
	return s, nil
}
