/* madvise's MADV_POPULATE_READ / _WRITE (Linux 5.14): a range's pages mapped
 * in one call, where touching them would take a page fault each (10-14 us of
 * CPU in a VM, under 1 us a page this way). Named here for headers older
 * than the kernel; an older kernel refuses the advice (EINVAL), and the
 * pages are then faulted in as they are used. */
#ifndef APPSHOT_POPULATE_H
#define APPSHOT_POPULATE_H

#include <sys/mman.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#endif
