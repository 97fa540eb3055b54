package main

import (
	"context"
	"errors"
	"flag"
)

// cmdForm is being written; this placeholder keeps the command table complete.
var cmdForm = &command{
	name:    "form",
	summary: "(being written)",
	setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		return func(ctx context.Context, e *env, args []string) error { return errors.New("not yet available") }
	},
}
