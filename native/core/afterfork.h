/* The process state a parent writes right after fork, while its pages are
 * still shared with the child (copy-on-write: the first write to each page
 * copies it, 3-4 us in a VM): the locks of the tables' write path and the
 * record of the new child. Each such variable is marked APPSHOT_AFTER_FORK;
 * in the shim the linker puts them all on one page of their own
 * (shim/afterfork.ld), so a fork copies one page for them, not one per file
 * they live in. Elsewhere (the addon, the tools) the mark changes nothing. */
#ifndef APPSHOT_AFTERFORK_H
#define APPSHOT_AFTERFORK_H

#define APPSHOT_AFTER_FORK __attribute__((section("appshot_after_fork")))

#endif
