//go:build !linux

package main

import (
	"context"
	"errors"
)

// adviseHugePages is Linux-only.
func adviseHugePages(context.Context) (int64, error) {
	return 0, errors.New("huge pages: not supported on this system")
}
