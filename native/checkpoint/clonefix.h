/*
 * What a template's warm clone changes in the image it restores (issue 19;
 * appshot-checkpoint restore --own-stdio, --moved OLD=NEW). Each clone is an
 * application of its own, so:
 *  - a file a saved process had at 0-2 (the log its output went to) becomes
 *    the restorer's own descriptor of that number, as a cold clone's command
 *    gets the clone command's: N clones do not write over one log at one
 *    offset;
 *  - a path the clone's rules redirect (OLD, the kernel's path in the image,
 *    or anything under it) is opened at the clone's own place NEW: open
 *    files and directories, FIFOs, Unix listeners and working directories.
 *    Mapped files are not moved: the image's pages of them are the
 *    template's file's (the harness refuses to clone those warm).
 */
#ifndef APPSHOT_CKPT_CLONEFIX_H
#define APPSHOT_CKPT_CLONEFIX_H

#include <cjson/cJSON.h>

#define CLONEFIX_MAX_MOVES 64

struct clone_moves {
	int n;
	const char *from[CLONEFIX_MAX_MOVES], *to[CLONEFIX_MAX_MOVES];
};

/* Adds "OLD=NEW" (both absolute); -1 when it is not that, or too many. */
int clonefix_add_move(struct clone_moves *m, char *arg);

/* Applies both to the FILES section (may be NULL) and the processes' JSON
 * (their "cwd"). A path too long once moved is left as it was. */
void clonefix_apply(cJSON *files, cJSON **procs, int n, const struct clone_moves *m, int own_stdio);

#endif
