//go:build !linux

package restore

import (
	"errors"
	"github.com/walsync/walsync/internal/fsys"
)

func openUnbuffered(fsys.OS, string) (fsys.File, error) { return nil, errors.ErrUnsupported }

const directAlign = 4096

func aligned([]byte) bool { return false }

func alignedBlock(n int) []byte { return make([]byte, n) }
