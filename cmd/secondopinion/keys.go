package main

import (
	"context"
	"errors"
	"flag"
)

// cmdKeys is being written; this placeholder keeps the command table complete.
var cmdKeys = &command{
	name:    "keys",
	summary: "(being written)",
	setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		return func(ctx context.Context, e *env, args []string) error { return errors.New("not yet available") }
	},
}
