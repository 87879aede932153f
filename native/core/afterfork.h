/* The process state written right after fork, while the parent's and the
 * child's pages are still shared (copy-on-write: the first write to each
 * page copies it, 3-4 us in a VM): in the parent, the locks of the tables'
 * write path and the record of the new child; in the child, the same locks
 * set free and its own identity. Each such variable is marked
 * APPSHOT_AFTER_FORK; in the shim the linker puts them all on one page
 * (shim/afterfork.ld), so each side copies one page for them, not one per
 * file they live in. Elsewhere (the addon, the tools) the mark changes
 * nothing. */
#ifndef APPSHOT_AFTERFORK_H
#define APPSHOT_AFTERFORK_H

#define APPSHOT_AFTER_FORK __attribute__((section("appshot_after_fork")))

/* The code a fork child runs before fork returns in it (the atfork
 * handler, what it calls, the rest of the fork wrapper). A child does not
 * get its parent's mappings of a library's text (the kernel lets those
 * pages fault in again), and in a VM each fault costs 10-14 us: in one
 * place (the linker gathers every .text.sorted.* section) they fault in
 * once, not once per file they come from. */
#define APPSHOT_AFTER_FORK_CODE __attribute__((section(".text.sorted.appshot_after_fork")))

#endif
