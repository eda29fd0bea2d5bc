//go:build !unix

package workers_test

import "time"

func cpuTime() time.Duration { return 0 }
