package embedded

import (
	"os"

	"golang.org/x/sys/unix"
)

// releaseMapped drops the pages of the store's memory map that loading
// read (every record's page) from the process's resident set: they are
// clean file pages, so the kernel reads them back from its page cache when a
// reply needs a record's display fields again. Without this a loaded index
// counts its whole records bucket in RSS as mapped file pages.
func (ix *Index) releaseMapped() {
	st, err := os.Stat(ix.db.Path())
	if err != nil || st.Size() == 0 {
		return
	}
	addr := ix.db.Info().Data
	if addr == 0 {
		return
	}
	_, _, errno := unix.Syscall(unix.SYS_MADVISE, addr, uintptr(st.Size()), unix.MADV_DONTNEED)
	if errno != 0 {
		ix.log.Debug("embedded index: madvise of the store's map failed", "err", errno)
	}
}
