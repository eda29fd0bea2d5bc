//go:build unix

package eval

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time (user + system) the process has used: steadier
// than wall time on a shared machine. ok is false where it is unknown.
func cpuTime() (d time.Duration, ok bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
