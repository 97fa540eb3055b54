//go:build !unix

package authform

import "time"

func cpuTime() time.Duration { return 0 }
