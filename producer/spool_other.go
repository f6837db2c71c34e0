//go:build !unix

package producer

import (
	"errors"
	"os"
)

func lockDir(string) (*os.File, error) {
	return nil, errors.New("producer: the spool needs flock(2), which this platform lacks")
}

func unlockDir(f *os.File) { f.Close() }
