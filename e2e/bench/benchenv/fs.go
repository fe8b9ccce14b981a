// Package benchenv describes the machine a benchmark runs on, for the
// header of its report.
package benchenv

import (
	"fmt"
	"syscall"
)

// FSType names the file system a directory is on, as far as it matters
// for fsync.
func FSType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown file system"
	}
	switch uint32(st.Type) {
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x01021994:
		return "tmpfs: fsync costs nothing here, use -dir on a disk"
	case 0x794C7630:
		return "overlayfs"
	}
	return fmt.Sprintf("file system 0x%x", uint32(st.Type))
}
