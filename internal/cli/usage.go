// Usage of the command line: help that lists a command's own flags before
// the configuration flags, and every mistake in an invocation (unknown
// command, extra argument, bad flag, bad configuration) as a usage error,
// exit status 2.
package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/streamworker/streamworker/config"
)

// configAnnotation marks the flags that set configuration keys.
const configAnnotation = "streamworker.config"

// addConfigFlags adds --config and one flag per configuration key to fs,
// marked so that help lists them after the command's own flags.
func addConfigFlags(fs *pflag.FlagSet) {
	config.RegisterFlags(fs)
	keys := map[string]bool{config.ConfigFlag: true}
	for _, k := range config.Keys() {
		keys[k.Key] = true
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if keys[f.Name] {
			_ = fs.SetAnnotation(f.Name, configAnnotation, []string{"true"}) // the flag exists
		}
	})
}

// strict makes every mistake in an invocation of c and its subcommands a
// usageError: arguments a command does not take, and an unknown or missing
// subcommand.
func strict(c *cobra.Command) {
	for _, sub := range c.Commands() {
		strict(sub)
	}
	c.SuggestionsMinimumDistance = 2
	if !c.Runnable() {
		// A command that only groups others: its arguments name a
		// subcommand, and cobra did not find it.
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				if !cmd.HasParent() {
					return cmd.Help()
				}
				return usageError{fmt.Errorf("%s needs a command: %s", cmd.CommandPath(), subcommands(cmd))}
			}
			err := fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				err = fmt.Errorf("%w; did you mean %s?", err, strings.Join(s, " or "))
			} else {
				err = fmt.Errorf("%w; the commands are %s", err, subcommands(cmd))
			}
			return usageError{err}
		}
		return
	}
	if args := c.Args; args != nil {
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
}

// helpRun shows the help of the command args name, and refuses, as a usage
// error, args that name none (cobra's help printed the root's usage and
// exited 0).
func helpRun(c *cobra.Command, args []string) error {
	cmd, rest, err := c.Root().Find(args)
	if err != nil || len(rest) > 0 {
		return usageError{fmt.Errorf("help: unknown command %q; the commands are %s", strings.Join(args, " "), subcommands(c.Root()))}
	}
	return cmd.Help()
}

// noArgs refuses any argument, as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), args)}
	}
	return nil
}

func subcommands(c *cobra.Command) string {
	var names []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	return strings.Join(names, ", ")
}

// helpColumns is the width flag descriptions are wrapped to in help, each
// continuation line indented under the description's first.
const helpColumns = 100

// usage writes c's usage: like cobra's, but with the command's own flags
// first and the configuration flags in a section of their own.
func usage(c *cobra.Command) error {
	var b strings.Builder
	b.WriteString("Usage:")
	if c.Runnable() {
		b.WriteString("\n  " + c.UseLine())
	}
	if c.HasAvailableSubCommands() {
		b.WriteString("\n  " + c.CommandPath() + " [command]")
	}
	if c.HasExample() {
		b.WriteString("\n\nExamples:\n" + c.Example)
	}
	if c.HasAvailableSubCommands() {
		b.WriteString("\n\nAvailable Commands:")
		var subs []*cobra.Command
		width := 0
		for _, s := range c.Commands() {
			if s.IsAvailableCommand() || s.Name() == "help" {
				subs = append(subs, s)
				width = max(width, len(s.Name()))
			}
		}
		for _, s := range subs { // the descriptions in one column
			fmt.Fprintf(&b, "\n  %-*s  %s", width, s.Name(), s.Short)
		}
	}
	own := pflag.NewFlagSet(c.Name(), pflag.ContinueOnError)
	conf := pflag.NewFlagSet(c.Name(), pflag.ContinueOnError)
	c.LocalFlags().VisitAll(func(f *pflag.Flag) {
		if _, ok := f.Annotations[configAnnotation]; ok {
			conf.AddFlag(f)
		} else {
			own.AddFlag(f)
		}
	})
	if own.HasAvailableFlags() {
		b.WriteString("\n\nFlags:\n" + strings.TrimRight(own.FlagUsagesWrapped(helpColumns), " \n"))
	}
	if c.HasAvailableInheritedFlags() {
		b.WriteString("\n\nGlobal Flags:\n" + strings.TrimRight(c.InheritedFlags().FlagUsagesWrapped(helpColumns), " \n"))
	}
	if conf.HasAvailableFlags() {
		b.WriteString("\n\nConfiguration flags (each key can also be set as SW_<KEY> in the environment,\n" +
			"e.g. SW_KAFKA_BROKERS, or in the --config file; flags win):\n" + strings.TrimRight(conf.FlagUsagesWrapped(helpColumns), " \n"))
	}
	if c.HasAvailableSubCommands() {
		b.WriteString("\n\nUse \"" + c.CommandPath() + " [command] --help\" for more information about a command.")
	}
	b.WriteString("\n")
	_, err := fmt.Fprint(c.OutOrStderr(), b.String())
	return err
}
