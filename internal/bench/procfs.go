package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the length of one clock tick of /proc/<pid>/stat and
// /proc/stat: USER_HZ, 100 on every Linux platform Go supports.
const clockTick = 10 * time.Millisecond

// errProcFormat reports a /proc file this package cannot read.
var errProcFormat = errors.New("bench: unexpected /proc format")

// processCPU returns the user plus system CPU time that process pid has used.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return 0, fmt.Errorf("%w: /proc/%d/stat", errProcFormat, pid)
	}
	f := strings.Fields(string(b[i+2:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: /proc/%d/stat has %d fields", errProcFormat, pid, len(f)+2)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%w: /proc/%d/stat: %w", errProcFormat, pid, err)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// runQueueWait returns the time the threads of process pid now alive have
// spent runnable but waiting for a CPU (the second field of
// /proc/<pid>/task/<tid>/schedstat, summed). Threads that exited are lost.
func runQueueWait(pid int) (time.Duration, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var wait int64
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			return 0, fmt.Errorf("%w: %s/%s/schedstat", errProcFormat, dir, t.Name())
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %s/%s/schedstat: %w", errProcFormat, dir, t.Name(), err)
		}
		wait += n
	}
	return time.Duration(wait), nil
}

// peakRSS returns the peak resident set size (VmHWM) of process pid in bytes.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: VmHWM %q", errProcFormat, rest)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%w: no VmHWM in /proc/%d/status", errProcFormat, pid)
}

// machineCPU returns the busy CPU time of the whole machine, summed over its
// cores: every /proc/stat cpu column but idle and iowait.
func machineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, fmt.Errorf("%w: /proc/stat first line %q", errProcFormat, line)
	}
	var busy int64
	// user nice system idle iowait irq softirq steal (guest columns are
	// already counted in user and nice).
	for i, s := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: /proc/stat: %w", errProcFormat, err)
		}
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += n
	}
	return time.Duration(busy) * clockTick, nil
}

// loadAverage returns the first three fields of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// cpuMeter measures the CPU time of a set of processes and of the whole
// machine over an interval.
type cpuMeter struct {
	pids    map[string]int
	start   map[string]time.Duration
	wait    map[string]time.Duration
	machine time.Duration
	at      time.Time
}

// startCPU starts measuring the named processes (a pid of 0 is skipped).
func startCPU(pids map[string]int) *cpuMeter {
	m := &cpuMeter{pids: pids, start: map[string]time.Duration{}, wait: map[string]time.Duration{}, at: time.Now()}
	for name, pid := range pids {
		if pid > 0 {
			m.start[name], _ = processCPU(pid)
			m.wait[name], _ = runQueueWait(pid)
		}
	}
	m.machine, _ = machineCPU()
	return m
}

// cpuUse is the CPU used over an interval, in cores (CPU seconds per second).
type cpuUse struct {
	Cores map[string]float64 // by process name, plus "other" for the rest of the machine
	// Waiting is, by process name, the time its threads were runnable but
	// not running, per second of the interval: the CPU it lacked.
	Waiting map[string]float64
	Wall    time.Duration
}

// stop returns the CPU each process and the rest of the machine used since
// startCPU, in cores. Processes that exited are reported as 0.
func (m *cpuMeter) stop() cpuUse {
	wall := time.Since(m.at)
	u := cpuUse{Cores: map[string]float64{}, Waiting: map[string]float64{}, Wall: wall}
	var ours time.Duration
	for name, pid := range m.pids {
		if pid <= 0 {
			continue
		}
		end, err := processCPU(pid)
		if err != nil {
			continue
		}
		d := end - m.start[name]
		ours += d
		u.Cores[name] = d.Seconds() / wall.Seconds()
		if w, err := runQueueWait(pid); err == nil {
			u.Waiting[name] = max(w-m.wait[name], 0).Seconds() / wall.Seconds()
		}
	}
	if end, err := machineCPU(); err == nil {
		u.Cores["other"] = max(end-m.machine-ours, 0).Seconds() / wall.Seconds()
	}
	return u
}
