/* The home rules of ts/home.ts, for the shim and the native tools. */
#ifndef APPSHOT_HOME_H
#define APPSHOT_HOME_H

#include <stddef.h>

/* Whether APPSHOT_HOME may be used by this process: the directory and its
 * folders (pools/, templates/) belong to the process's user and no one else
 * can write them, and its files (tables.mdb and its LMDB lock file, which
 * LMDB opens itself, following links; inflight; open.lock) are absent or
 * regular files of that user, not links. Whoever could
 * write there could plant links that make appshot write where they choose.
 * Returns 0, or EACCES with a sentence naming the path, the owner and the
 * fix in err. A handful of stat calls: run once per open of the tables. */
int home_check(const char *home, char *err, size_t errlen);

#endif
