#define _GNU_SOURCE
#include "tabledb.h"
#include "afterfork.h"
#include "home.h"
#include "lmdbfiles.h"
#include "lockcheck.h"
#include "rawcall.h"
#include "tablecheck.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/file.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int fail(char *err, size_t errlen, int rc, const char *fmt, const char *a, const char *b)
{
	snprintf(err, errlen, fmt, a, b);
	return rc;
}

static const char *mdb_cause(int rc)
{
	return rc > 0 ? strerror(rc) : mdb_strerror(rc);
}

static int open_dbi(MDB_txn *txn, const char *name, MDB_dbi *dbi)
{
	return mdb_dbi_open(txn, name, 0, dbi);
}

static int read_meta_u32(const struct tabledb *t, MDB_txn *txn, const char *name, uint32_t *out)
{
	MDB_val k = { strlen(name), (void *)name }, v;
	int rc = mdb_get(txn, t->meta, &k, &v);
	if (rc) return rc;
	if (v.mv_size != 4) return MDB_CORRUPTED;
	*out = get_u32be(v.mv_data);
	return 0;
}

static int open_lock_fd(struct tabledb *t, const char *home)
{
	char path[4096];
	struct stat st;
	if (snprintf(path, sizeof path, "%s/%s", home, APPSHOT_OPEN_LOCK_FILE) >= (int)sizeof path)
		return ENAMETOOLONG;
	int fd = home_path_open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) return errno;
	t->lock_fd = appshot_fd_high(fd, 1);
	if (fstat(t->lock_fd, &st) != 0) return errno;
	t->lock_dev = st.st_dev;
	t->lock_ino = st.st_ino;
	return 0;
}

static int flock_retry(int fd, int op)
{
	int rc;
	while ((rc = flock(fd, op)) != 0 && errno == EINTR)
		;
	return rc == 0 ? 0 : errno;
}

/* Byte 0 of the open lock, as a record lock (which is the process's, not
 * the open file's): how processes sharing one open file of it take turns. */
static int record_lock(int fd, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
	int rc;
	while ((rc = fcntl(fd, F_SETLKW, &fl)) != 0 && errno == EINTR)
		;
	return rc == 0 ? 0 : errno;
}

/* The threads of a process take turns too: a flock is the open file's, so
 * one thread's unlock would end another's. LMDB lets one writer in at a
 * time anyway. */
static pthread_mutex_t write_turn APPSHOT_AFTER_FORK = PTHREAD_MUTEX_INITIALIZER;

/* Set to its initial value rather than through pthread_mutex_init: the
 * parent never calls that, so a fork child would bind it first (the
 * dynamic linker's lookup faults in a dozen pages of the child). */
APPSHOT_AFTER_FORK_CODE void tabledb_after_fork_child(void) { write_turn = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER; }

int tabledb_write_lock(struct tabledb *t)
{
	pthread_mutex_lock(&write_turn);
	int rc = t->lock_shared ? record_lock(t->lock_fd, F_WRLCK) : 0;
	if (!rc && (rc = flock_retry(t->lock_fd, LOCK_SH)) && t->lock_shared) record_lock(t->lock_fd, F_UNLCK);
	if (rc) pthread_mutex_unlock(&write_turn);
	return rc;
}

void tabledb_write_unlock(struct tabledb *t)
{
	flock_retry(t->lock_fd, LOCK_UN);
	if (t->lock_shared) record_lock(t->lock_fd, F_UNLCK);
	pthread_mutex_unlock(&write_turn);
}

/* LMDB's write mutex lies in its lock file (MDB_txninfo's mt2 union, after
 * the first 64-byte cache line of MDB_txbody) as a robust pthread mutex,
 * whose first word is the futex the kernel keeps the owner's TID in (the
 * robust-futex protocol, which is why it is the kernel's and not glibc's
 * layout that counts). Read with pread: the lock file's page is the one
 * LMDB maps. */
#define LMDB_WMUTEX_OFFSET 64
#define FUTEX_TID_BITS 0x3fffffffu

pid_t tabledb_write_holder(const struct tabledb *t)
{
	uint32_t word;
	if (t->env_lock_fd <= 0) return 0;
	if (raw_call(SYS_pread64, t->env_lock_fd, &word, sizeof word, (off_t)LMDB_WMUTEX_OFFSET) != (long)sizeof word) return 0;
	return (pid_t)(word & FUTEX_TID_BITS);
}

/* LMDB's open() and close() (core/lmdbfiles.h): while an environment is
 * opened through the application's descriptors, its data and lock files
 * are duplicates of them; in the shim, every descriptor LMDB keeps sits
 * high and guarded (core/home.h), close-on-exec (the application's
 * descriptors are what crosses exec). */
static __thread struct tabledb *opening;

static int home_file_of(const struct tabledb *t, const char *path)
{
	size_t n = strlen(t->path);
	if (strncmp(path, t->path, n)) return -1;
	if (!path[n]) return HOMEFD_DATA;
	return strcmp(path + n, "-lock") ? -1 : HOMEFD_LOCK;
}

/* The boot id the lmdb package's LMDB reads at every open: it only picks
 * the meta page after a crash under overlappingSync, which appshot's
 * openers never use (MDB_NOSYNC here; noSync, so no overlappingSync, in
 * ts/tabledb.ts). Without it LMDB writes 0 there, as where /proc is not
 * mounted; the open, fstatfs, read and close of a /proc/sys file are saved
 * at every program's start (issue 21). */
#define LMDB_BOOT_ID "/proc/sys/kernel/random/boot_id"

static int route_open(const char *path, int flags, mode_t mode)
{
	if (!strcmp(path, LMDB_BOOT_ID)) {
		errno = ENOENT;
		return -1;
	}
	struct tabledb *t = opening;
	int which = t ? home_file_of(t, path) : -1, fd;
	/* The meta pages' O_DSYNC descriptor gets a plain duplicate: with
	 * MDB_NOSYNC LMDB writes meta pages through the data descriptor.
	 * Duplicated straight into the high band: one call, not three. */
	if (which >= 0 && t->through) fd = appshot_fd_dup_high(t->through->fd[which]);
	else if ((fd = home_path_open(path, flags, mode)) >= 0 && which >= 0) fd = appshot_fd_high(fd, 1);
	if (fd < 0 || which < 0) return fd;
	if (which == HOMEFD_LOCK) t->env_lock_fd = fd;
	struct stat st;
	/* A duplicate is the file the checked descriptor is: no need to ask. */
	if (t->through && t->env_fds < 4) {
		t->env_fd[t->env_fds] = fd;
		t->env_dev[t->env_fds] = t->through->dev[which];
		t->env_ino[t->env_fds++] = t->through->ino[which];
	} else if (t->env_fds < 4 && fstat(fd, &st) == 0) {
		t->env_fd[t->env_fds] = fd;
		t->env_dev[t->env_fds] = st.st_dev;
		t->env_ino[t->env_fds++] = st.st_ino;
	}
	return fd;
}

APPSHOT_AFTER_FORK_CODE static void route_close(int fd)
{
	appshot_fd_unguard(fd);
	raw_call(SYS_close, fd);
}

/* In the lmdb package's mdb.c, appended by native/CMakeLists.txt. */
const mdb_size_t *appshot_mdb_txnid_word(MDB_env *env);
_Static_assert(sizeof(mdb_size_t) == sizeof(uint64_t), "LMDB's transaction ids are 64-bit here");

static int env_open(struct tabledb *t, const struct home_fds *through)
{
	appshot_lmdb_open_route = route_open;
	appshot_lmdb_close_route = route_close;
	opening = t;
	t->through = through;
	int rc = mdb_env_open(t->env, t->path, MDB_NOSUBDIR | MDB_NOSYNC | MDB_NOTLS, 0600);
	t->through = NULL;
	opening = NULL;
	return rc;
}

/* Opens the environment as every opener must (same flags, map size and
 * limits; by path, under the open lock held exclusively and after checking
 * the files, unless through an ancestor's checked descriptors) and its
 * named databases, and checks the schema version. */
static int open_env(struct tabledb *t, const char *home, const struct home_fds *fds, int checked,
		    char *err, size_t errlen)
{
	int rc;
	MDB_txn *txn = NULL;
	memset(t, 0, sizeof *t);
	t->lock_fd = -1;
	if (snprintf(t->path, sizeof t->path, "%s/%s", home, APPSHOT_TABLES_FILE) >= (int)sizeof t->path)
		return fail(err, errlen, ENAMETOOLONG, "tables path under '%s' is too long%s", home, "");
	if (checked) {
		if ((rc = home_check(home, err, errlen))) return rc;
		/* The harness creates the tables; a process of an application only
		 * joins them, so a missing file is an error, not something to make. */
		if (access(t->path, R_OK | W_OK) != 0)
			return fail(err, errlen, errno, "cannot open tables at %s: %s", t->path, strerror(errno));
	}
	if ((rc = mdb_env_create(&t->env)))
		return fail(err, errlen, rc, "cannot open tables at %s: %s", t->path, mdb_cause(rc));
	mdb_env_set_maxdbs(t->env, APPSHOT_MAX_DBS);
	mdb_env_set_maxreaders(t->env, APPSHOT_MAX_READERS);
	mdb_env_set_mapsize(t->env, APPSHOT_MAP_SIZE);
	int check = 0;
	if (!checked && (rc = home_check_for(home, fds->owner, fds->fresh, err, errlen))) {
		tabledb_close(t);
		return rc;
	}
	if (!checked) {
		/* Writers' flock on an open file of their own: one a process
		 * killed while writing holds goes with it. Only a process that
		 * may not open the file (it changed its user) takes the shared
		 * one, whose flock outlives a writer killed meanwhile until the
		 * next writer through it unlocks (README). */
		if (open_lock_fd(t, home) != 0 || t->lock_ino != fds->ino[HOMEFD_OPENLOCK] ||
		    t->lock_dev != fds->dev[HOMEFD_OPENLOCK]) {
			tabledb_forget_lock(t);
			t->lock_fd = fds->fd[HOMEFD_OPENLOCK];
			t->lock_dev = fds->dev[HOMEFD_OPENLOCK];
			t->lock_ino = fds->ino[HOMEFD_OPENLOCK];
			t->lock_shared = 1;
		}
		rc = env_open(t, fds);
	} else {
		if ((rc = open_lock_fd(t, home)) || (rc = flock_retry(t->lock_fd, LOCK_EX))) {
			fail(err, errlen, rc, "cannot lock %s/" APPSHOT_OPEN_LOCK_FILE ": %s", home, strerror(rc));
			tabledb_close(t);
			return rc;
		}
		char why[512], lockpath[sizeof t->path + 8];
		snprintf(lockpath, sizeof lockpath, "%s-lock", t->path);
		if (lockcheck_file(lockpath, why, sizeof why) == LOCKCHECK_DAMAGED) {
			flock_retry(t->lock_fd, LOCK_UN);
			fail(err, errlen, rc = EBADMSG, "%s; end the applications using %s, then run again", why, home);
			tabledb_close(t);
			return rc;
		}
		/* Before LMDB reads a byte of it: LMDB trusts the header pages and
		 * the page numbers they give (a file cut short faults with SIGBUS). */
		check = tablecheck_file(t->path, TABLECHECK_TOP, 0, why, sizeof why);
		if (check == TABLECHECK_DAMAGED)
			fail(err, errlen, EBADMSG, "the tables at %s are damaged: %s; nothing was changed. Move the file aside (appshot starts new tables) or restore it from a backup", t->path, why);
		else if (check) fail(err, errlen, check, "%s%s", why, "");
		rc = check ? 0 : env_open(t, fds);
		flock_retry(t->lock_fd, LOCK_UN);
	}
	if (rc || check) {
		if (check) rc = check == TABLECHECK_DAMAGED ? EBADMSG : check;
		else fail(err, errlen, rc, "cannot open tables at %s: %s", t->path, mdb_cause(rc));
		tabledb_close(t);
		return rc;
	}
	/* A program started through the application's descriptors (an exec'd
	 * one, a fork child) leaves this to its first write: most never write,
	 * and the walk over every slot costs each start (issue 21). Openers by
	 * path (the first process, the tools) clear them now. */
	t->readers_unchecked = 1;
	if (checked) tabledb_check_readers(t);
	t->txnid_at = (const uint64_t *)appshot_mdb_txnid_word(t->env);
	mdb_filehandle_t fd;
	struct stat st;
	if (fds && !checked) {
		/* Opened through the application's descriptors: the data file is
		 * the one they name. */
		t->data_dev = fds->dev[HOMEFD_DATA];
		t->data_ino = fds->ino[HOMEFD_DATA];
	} else if (mdb_env_get_fd(t->env, &fd) == 0 && fstat(fd, &st) == 0) {
		t->data_dev = st.st_dev;
		t->data_ino = st.st_ino;
	}
	if ((rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn))) {
		fail(err, errlen, rc, "cannot open tables at %s: %s", t->path, mdb_cause(rc));
		tabledb_close(t);
		return rc;
	}
	if ((rc = open_dbi(txn, DB_META, &t->meta)) || (rc = open_dbi(txn, DB_APPS, &t->apps)) ||
	    (rc = open_dbi(txn, DB_FWD, &t->fwd)) || (rc = open_dbi(txn, DB_REV, &t->rev)) ||
	    (rc = open_dbi(txn, DB_ALLOC, &t->alloc)) || (rc = open_dbi(txn, DB_PROCS, &t->procs)))
		goto txn_fail;
	/* Tables written before path redirections existed have no paths
	 * database: their applications have no redirections. */
	rc = open_dbi(txn, DB_PATHS, &t->paths);
	if (rc && rc != MDB_NOTFOUND) goto txn_fail;
	t->has_paths = rc == 0;
	uint32_t version;
	if ((rc = read_meta_u32(t, txn, "version", &version)) ||
	    (rc = read_meta_u32(t, txn, "node", &t->node)))
		goto txn_fail;
	if (version != APPSHOT_SCHEMA_VERSION) {
		char v[32];
		snprintf(v, sizeof v, "%u (this shim reads %u)", version, APPSHOT_SCHEMA_VERSION);
		rc = fail(err, errlen, EPROTO, "tables at %s have schema version %s", t->path, v);
		goto cleanup;
	}
	/* Committing (not aborting) keeps the DBI handles opened in it. */
	if ((rc = mdb_txn_commit(txn))) {
		txn = NULL;
		goto txn_fail;
	}
	return 0;
txn_fail:
	fail(err, errlen, rc, "cannot read tables at %s: %s", t->path, mdb_cause(rc));
cleanup:
	mdb_txn_abort(txn);
	tabledb_close(t);
	return rc;
}

int tabledb_open_env(struct tabledb *t, const char *home, char *err, size_t errlen)
{
	return open_env(t, home, NULL, 1, err, errlen);
}

void tabledb_close(struct tabledb *t)
{
	if (t->env) mdb_env_close(t->env);
	t->env = NULL;
	tabledb_forget_lock(t);
}

void tabledb_check_readers(struct tabledb *t)
{
	int dead;
	if (!t->readers_unchecked) return;
	t->readers_unchecked = 0;
	mdb_reader_check(t->env, &dead);
}

/* Whether the application is registered and running (0), with its flags. */
static int check_app(struct tabledb *t, char *err, size_t errlen)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn);
	if (rc) return fail(err, errlen, rc, "cannot read tables at %s: %s", t->path, mdb_cause(rc));
	MDB_val k = { t->aidlen, t->aid }, v;
	rc = mdb_get(txn, t->apps, &k, &v);
	struct app_val app;
	if (rc == 0 && v.mv_size >= APP_VAL_FIXED) {
		app_val_get(&app, v.mv_data);
		if (app.state != APP_RUNNING) rc = MDB_NOTFOUND;
		t->app_flags = app.flags;
	} else if (rc == 0) {
		rc = MDB_CORRUPTED;
	}
	mdb_txn_abort(txn);
	if (rc == MDB_NOTFOUND)
		return fail(err, errlen, ENOENT,
			    "application '%s' is not running in the tables at %s (start programs with 'appshot run')",
			    t->aid, t->path);
	if (rc) return fail(err, errlen, rc, "cannot read tables at %s: %s", t->path, mdb_cause(rc));
	return 0;
}

int tabledb_open(struct tabledb *t, const char *home, const char *aid, char *err, size_t errlen)
{
	return tabledb_open_fds(t, home, aid, NULL, 1, err, errlen);
}

int tabledb_open_fds(struct tabledb *t, const char *home, const char *aid, const struct home_fds *fds,
		     int checked, char *err, size_t errlen)
{
	size_t aidlen = strlen(aid);
	if (!aid_valid(aid, aidlen)) {
		memset(t, 0, sizeof *t);
		t->lock_fd = -1;
		return fail(err, errlen, EINVAL, "APPSHOT_AID '%s' is not a valid application ID%s", aid, "");
	}
	int rc = open_env(t, home, fds, checked || !fds, err, errlen);
	if (rc) return rc;
	t->aidlen = aidlen;
	memcpy(t->aid, aid, aidlen + 1);
	if ((rc = check_app(t, err, errlen))) tabledb_close(t);
	return rc;
}

APPSHOT_AFTER_FORK_CODE static int fd_is(int fd, dev_t dev, ino_t ino)
{
	struct stat st;
	/* The system call itself: libc's fstat is fstatat(fd, "", ...), which
	 * costs a fork child (tabledb_forget_lock) two more page faults. */
	return fd >= 0 && raw_call(SYS_fstat, fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

APPSHOT_AFTER_FORK_CODE void tabledb_close_lock(const struct tabledb *t)
{
	/* Only if the number is still ours: the program may have closed it
	 * and reused it for a file of its own. The application's shared one
	 * stays: it is every process's. */
	if (t->lock_shared) return;
	if (fd_is(t->lock_fd, t->lock_dev, t->lock_ino)) route_close(t->lock_fd);
	else appshot_fd_unguard(t->lock_fd);
}

void tabledb_forget_lock(struct tabledb *t)
{
	tabledb_close_lock(t);
	t->lock_fd = -1;
}

void tabledb_forget_fds(struct tabledb *t)
{
	/* A number that no longer is the file is the program's now: no longer guarded. */
	for (int i = 0; i < t->env_fds; i++)
		if (fd_is(t->env_fd[i], t->env_dev[i], t->env_ino[i])) route_close(t->env_fd[i]);
		else appshot_fd_unguard(t->env_fd[i]);
	t->env_fds = 0;
	t->env_lock_fd = 0;
}

int tabledb_fds_ok(const struct tabledb *t)
{
	mdb_filehandle_t fd;
	if (__atomic_load_n(&t->lost, __ATOMIC_RELAXED) || mdb_env_get_fd(t->env, &fd) != 0 || !fd_is(fd, t->data_dev, t->data_ino) ||
	    !fd_is(t->lock_fd, t->lock_dev, t->lock_ino))
		return 0;
	for (int i = 0; i < t->env_fds; i++)
		if (!fd_is(t->env_fd[i], t->env_dev[i], t->env_ino[i])) return 0;
	return 1;
}

int tabledb_redirects(const struct tabledb *t, MDB_txn *txn, tabledb_redirect_fn *fn, void *arg)
{
	if (!t->has_paths) return 0;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, t->paths, &c);
	if (rc) return rc;
	uint8_t kb[PATH_KEY_MAX];
	size_t plen = path_key(kb, t->aid, t->aidlen, 0) - 2; /* aid and its NUL */
	MDB_val k = { plen, kb }, v;
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size != plen + 2 || memcmp(k.mv_data, kb, plen)) break;
		size_t fromlen;
		if (path_val_split(v.mv_data, v.mv_size, &fromlen)) {
			rc = MDB_CORRUPTED;
			break;
		}
		const char *val = v.mv_data;
		if ((rc = fn(arg, val, fromlen, val + fromlen + 1, v.mv_size - fromlen - 1))) break;
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

const uint64_t *tabledb_txnid_word(const struct tabledb *t) { return t->txnid_at; }

uint64_t tabledb_txnid(const struct tabledb *t)
{
	if (t->txnid_at) return __atomic_load_n(t->txnid_at, __ATOMIC_ACQUIRE);
	MDB_envinfo info; /* no lock region: the newer meta page's */
	mdb_env_info(t->env, &info);
	return info.me_last_txnid;
}

int tabledb_fwd(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid, struct fwd_val *out)
{
	uint8_t kb[FWD_KEY_MAX];
	MDB_val k = { fwd_key(kb, t->aid, t->aidlen, type, vrid), kb }, v;
	int rc = mdb_get(txn, t->fwd, &k, &v);
	if (rc) return rc;
	if (v.mv_size != FWD_VAL_LEN) return MDB_CORRUPTED;
	fwd_val_get(out, v.mv_data);
	return 0;
}

int tabledb_rev(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t srid, uint32_t *vrid)
{
	uint8_t kb[REV_KEY_LEN];
	rev_key(kb, t->node, type, srid);
	MDB_val k = { REV_KEY_LEN, kb }, v;
	int rc = mdb_get(txn, t->rev, &k, &v);
	if (rc == MDB_NOTFOUND) return REV_NONE;
	if (rc) return rc;
	if (v.mv_size < 4) return MDB_CORRUPTED;
	if (v.mv_size - 4 != t->aidlen || memcmp((uint8_t *)v.mv_data + 4, t->aid, t->aidlen))
		return REV_FOREIGN;
	*vrid = get_u32be(v.mv_data);
	return REV_MINE;
}

int tabledb_rev_seen(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t srid, uint32_t *vrid)
{
	int who = tabledb_rev(t, txn, type, srid, vrid);
	if (who != REV_FOREIGN) return who;
	uint8_t kb[REV_KEY_LEN];
	rev_key(kb, t->node, type, srid);
	MDB_val k = { REV_KEY_LEN, kb }, v;
	struct fwd_val fv;
	if (mdb_get(txn, t->rev, &k, &v) || v.mv_size < 4) return REV_FOREIGN;
	uint32_t at = get_u32be(v.mv_data);
	if (tabledb_fwd(t, txn, type, at, &fv) || fv.creator != CREATOR_TEMPLATE || fv.srid != srid) return REV_FOREIGN;
	*vrid = at;
	return REV_MINE;
}

/* Drops the forward row that a stale reverse row points at, if it still
 * points back at this srid. */
static int drop_stale_owner(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t srid,
			    const MDB_val *revval)
{
	if (revval->mv_size < 4 || revval->mv_size - 4 > APPSHOT_AID_MAX) return MDB_CORRUPTED;
	uint8_t kb[FWD_KEY_MAX];
	MDB_val k = { fwd_key(kb, (const char *)revval->mv_data + 4, revval->mv_size - 4, type,
			      get_u32be(revval->mv_data)), kb }, v;
	int rc = mdb_get(txn, t->fwd, &k, &v);
	if (rc == MDB_NOTFOUND) return 0;
	if (rc) return rc;
	if (v.mv_size == FWD_VAL_LEN && get_u32be(v.mv_data) == srid)
		return mdb_del(txn, t->fwd, &k, NULL);
	return 0;
}

static int counter_next(const struct tabledb *t, MDB_txn *txn, const char *aid, size_t aidlen,
			uint8_t type, uint32_t base, uint32_t *out);

/* Puts the reverse row; a reverse row already held for that srid is stale
 * (the kernel only hands out a free ID), so its owner's forward row goes. */
static int put_rev(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid, uint32_t srid)
{
	uint8_t rk[REV_KEY_LEN], rv[REV_VAL_MAX];
	rev_key(rk, t->node, type, srid);
	MDB_val k = { REV_KEY_LEN, rk }, v = { rev_val(rv, vrid, t->aid, t->aidlen), rv };
	int rc = mdb_put(txn, t->rev, &k, &v, MDB_NOOVERWRITE);
	if (rc != MDB_KEYEXIST) return rc;
	/* On MDB_KEYEXIST, v holds the existing row. */
	if ((rc = drop_stale_owner(t, txn, type, srid, &v))) return rc;
	v.mv_size = rev_val(rv, vrid, t->aid, t->aidlen);
	v.mv_data = rv;
	return mdb_put(txn, t->rev, &k, &v, 0);
}

static int put_fwd(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid,
		   const struct fwd_val *fv, unsigned flags)
{
	uint8_t fk[FWD_KEY_MAX], fvb[FWD_VAL_LEN];
	fwd_val_put(fvb, fv);
	MDB_val k = { fwd_key(fk, t->aid, t->aidlen, type, vrid), fk }, v = { FWD_VAL_LEN, fvb };
	return mdb_put(txn, t->fwd, &k, &v, flags);
}

int tabledb_map_at(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid, const struct fwd_val *fv)
{
	int rc = put_fwd(t, txn, type, vrid, fv, MDB_NOOVERWRITE);
	return rc ? rc : put_rev(t, txn, type, vrid, fv->srid);
}

int tabledb_map_new(const struct tabledb *t, MDB_txn *txn, uint8_t type, const struct fwd_val *fv,
		   uint32_t *vrid)
{
	int rc = MDB_KEYEXIST;
	/* Identity first: the insert itself tells whether vrid = srid is free. */
	if (!(t->app_flags & APP_FLAG_NO_IDENTITY)) {
		*vrid = fv->srid;
		rc = put_fwd(t, txn, type, *vrid, fv, MDB_NOOVERWRITE);
	}
	while (rc == MDB_KEYEXIST) {
		if ((rc = counter_next(t, txn, t->aid, t->aidlen, type, VRID_REMAP_BASE, vrid))) return rc;
		rc = put_fwd(t, txn, type, *vrid, fv, MDB_NOOVERWRITE);
	}
	return rc ? rc : put_rev(t, txn, type, *vrid, fv->srid);
}

int tabledb_map_over(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid, const struct fwd_val *fv)
{
	int rc = tabledb_unmap(t, txn, type, vrid);
	if (rc && rc != MDB_NOTFOUND) return rc;
	rc = put_fwd(t, txn, type, vrid, fv, 0);
	return rc ? rc : put_rev(t, txn, type, vrid, fv->srid);
}

int tabledb_take(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid, struct fwd_val *out)
{
	uint8_t fk[FWD_KEY_MAX];
	MDB_val k = { fwd_key(fk, t->aid, t->aidlen, type, vrid), fk }, v;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, t->fwd, &cur);
	if (rc) return rc;
	/* One descent finds and deletes the row. */
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
	if (rc == 0 && v.mv_size != FWD_VAL_LEN) rc = MDB_CORRUPTED;
	if (rc == 0) {
		fwd_val_get(out, v.mv_data);
		rc = mdb_cursor_del(cur, 0);
	}
	mdb_cursor_close(cur);
	if (rc) return rc;
	uint8_t rk[REV_KEY_LEN];
	rev_key(rk, t->node, type, out->srid);
	MDB_val r = { REV_KEY_LEN, rk };
	rc = mdb_del(txn, t->rev, &r, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int tabledb_unmap_row(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid, uint32_t srid)
{
	uint8_t fk[FWD_KEY_MAX], rk[REV_KEY_LEN];
	MDB_val k = { fwd_key(fk, t->aid, t->aidlen, type, vrid), fk };
	int rc = mdb_del(txn, t->fwd, &k, NULL);
	if (rc) return rc;
	rev_key(rk, t->node, type, srid);
	MDB_val r = { REV_KEY_LEN, rk };
	rc = mdb_del(txn, t->rev, &r, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int tabledb_unmap(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid)
{
	struct fwd_val fv;
	uint32_t owner_vrid;
	int rc = tabledb_fwd(t, txn, type, vrid, &fv);
	if (rc) return rc;
	if (tabledb_rev(t, txn, type, fv.srid, &owner_vrid) == REV_MINE && owner_vrid == vrid)
		return tabledb_unmap_row(t, txn, type, vrid, fv.srid);
	uint8_t fk[FWD_KEY_MAX];
	MDB_val k = { fwd_key(fk, t->aid, t->aidlen, type, vrid), fk };
	return mdb_del(txn, t->fwd, &k, NULL);
}

static int counter_next(const struct tabledb *t, MDB_txn *txn, const char *aid, size_t aidlen,
			uint8_t type, uint32_t base, uint32_t *out)
{
	uint8_t kb[APPSHOT_AID_MAX + 2], vb[4];
	MDB_val k = { alloc_key(kb, aid, aidlen, type), kb }, v;
	int rc = mdb_get(txn, t->alloc, &k, &v);
	uint32_t next = base;
	if (rc == 0 && v.mv_size == 4) next = get_u32be(v.mv_data);
	else if (rc && rc != MDB_NOTFOUND) return rc;
	*out = next;
	next = next + 1 >= 0x7fffffffu ? base : next + 1;
	put_u32be(vb, next);
	v.mv_size = 4;
	v.mv_data = vb;
	return mdb_put(txn, t->alloc, &k, &v, 0);
}

int tabledb_counter(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t *next)
{
	uint8_t kb[APPSHOT_AID_MAX + 2];
	MDB_val k = { alloc_key(kb, t->aid, t->aidlen, type), kb }, v;
	int rc = mdb_get(txn, t->alloc, &k, &v);
	if (rc == 0 && v.mv_size != 4) rc = MDB_CORRUPTED;
	if (rc == 0) *next = get_u32be(v.mv_data);
	return rc;
}

int tabledb_claim(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid, uint32_t srid)
{
	uint8_t rk[REV_KEY_LEN], rv[REV_VAL_MAX];
	rev_key(rk, t->node, type, srid);
	MDB_val k = { REV_KEY_LEN, rk }, v = { rev_val(rv, vrid, t->aid, t->aidlen), rv };
	return mdb_put(txn, t->rev, &k, &v, MDB_NOOVERWRITE);
}

int tabledb_claim_skey(const struct tabledb *t, MDB_txn *txn, uint8_t keytype, uint32_t vkey,
		      int identity, uint32_t *skey)
{
	int rc = MDB_KEYEXIST;
	if (identity && !(t->app_flags & APP_FLAG_NO_IDENTITY)) {
		*skey = vkey;
		rc = tabledb_claim(t, txn, keytype, vkey, *skey);
	}
	while (rc == MDB_KEYEXIST) {
		if ((rc = counter_next(t, txn, "", 0, keytype, SKEY_REMAP_BASE, skey))) return rc;
		rc = tabledb_claim(t, txn, keytype, vkey, *skey);
	}
	return rc;
}

int tabledb_release(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t srid)
{
	uint8_t rk[REV_KEY_LEN];
	rev_key(rk, t->node, type, srid);
	MDB_val k = { REV_KEY_LEN, rk };
	return mdb_del(txn, t->rev, &k, NULL);
}

int tabledb_put_fwd(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t vrid, const struct fwd_val *fv)
{
	return put_fwd(t, txn, type, vrid, fv, 0);
}

static int type_prefix(const struct tabledb *t, uint8_t type, uint8_t *kb)
{
	memcpy(kb, t->aid, t->aidlen);
	kb[t->aidlen] = 0;
	kb[t->aidlen + 1] = type;
	return (int)t->aidlen + 2;
}

int tabledb_each(const struct tabledb *t, MDB_txn *txn, uint8_t type, tabledb_row_fn *fn, void *arg)
{
	uint8_t kb[FWD_KEY_MAX];
	int plen = type_prefix(t, type, kb);
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, t->fwd, &cur);
	if (rc) return rc;
	MDB_val k = { (size_t)plen, kb }, v;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != (size_t)plen + 4 || memcmp(k.mv_data, kb, plen)) break;
		if (v.mv_size != FWD_VAL_LEN) {
			rc = MDB_CORRUPTED;
			break;
		}
		struct fwd_val row;
		fwd_val_get(&row, v.mv_data);
		if ((rc = fn(arg, get_u32be((uint8_t *)k.mv_data + plen), &row))) break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int tabledb_last(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t *vrid)
{
	uint8_t kb[FWD_KEY_MAX];
	/* The first key past this type's rows (the next type's prefix), and
	 * one step back: two descents, however many rows the type has. */
	int plen = type_prefix(t, type, kb);
	kb[plen - 1] = (uint8_t)(type + 1);
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, t->fwd, &cur);
	if (rc) return rc;
	MDB_val k = { (size_t)plen, kb }, v;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	rc = mdb_cursor_get(cur, &k, &v, rc == MDB_NOTFOUND ? MDB_LAST : MDB_PREV);
	kb[plen - 1] = type;
	if (rc == 0 && (k.mv_size != (size_t)plen + 4 || memcmp(k.mv_data, kb, plen))) rc = MDB_NOTFOUND;
	if (rc == 0) *vrid = get_u32be((uint8_t *)k.mv_data + plen);
	mdb_cursor_close(cur);
	return rc;
}

/* A process's row is its own, not a dead one's that had its number, while
 * the procs row's start time is the process's. */
static int proc_row_is(const struct tabledb *t, MDB_txn *txn, uint32_t spid, uint64_t start_ticks)
{
	uint8_t kb[PROC_KEY_LEN];
	proc_key(kb, spid);
	MDB_val k = { PROC_KEY_LEN, kb }, v;
	return mdb_get(txn, t->procs, &k, &v) == 0 && v.mv_size >= 8 && get_u64be(v.mv_data) == start_ticks;
}

static int put_proc(const struct tabledb *t, MDB_txn *txn, uint32_t spid, uint64_t start_ticks)
{
	uint8_t kb[PROC_KEY_LEN], vb[PROC_VAL_MAX];
	proc_key(kb, spid);
	MDB_val k = { PROC_KEY_LEN, kb }, v = { proc_val(vb, start_ticks, t->aid, t->aidlen), vb };
	return mdb_put(txn, t->procs, &k, &v, 0);
}

int tabledb_pid_lookup(const struct tabledb *t, MDB_txn *txn, uint32_t spid, uint64_t start_ticks, uint32_t *vpid)
{
	return tabledb_rev(t, txn, RT_PID, spid, vpid) == REV_MINE && proc_row_is(t, txn, spid, start_ticks) ? 0 : -1;
}

int tabledb_pid_record(const struct tabledb *t, MDB_txn *txn, uint32_t spid, uint64_t start_ticks,
		      uint32_t want_vpid, uint32_t creator, uint32_t *vpid)
{
	int rc;
	if (tabledb_pid_lookup(t, txn, spid, start_ticks, vpid) == 0) return 0;
	if (tabledb_rev(t, txn, RT_PID, spid, vpid) == REV_MINE &&
	    (rc = tabledb_unmap_row(t, txn, RT_PID, *vpid, spid))) /* a dead process of ours had this number */
		return rc;
	struct fwd_val fv = { .srid = spid, .creator = creator, .created_ms = now_ms() };
	rc = MDB_KEYEXIST;
	if (want_vpid) {
		*vpid = want_vpid;
		rc = tabledb_map_at(t, txn, RT_PID, want_vpid, &fv);
	}
	/* Without a wish, or when the wished vpid is held (by a process that
	 * outlived the one that reserved it for us): identity first. */
	if (rc == MDB_KEYEXIST) rc = tabledb_map_new(t, txn, RT_PID, &fv, vpid);
	return rc ? rc : put_proc(t, txn, spid, start_ticks);
}

int tabledb_pid_reserve(const struct tabledb *t, MDB_txn *txn, uint32_t *vpid)
{
	return counter_next(t, txn, t->aid, t->aidlen, RT_PID, VRID_REMAP_BASE, vpid);
}

int tabledb_pid_forget(const struct tabledb *t, MDB_txn *txn, uint32_t spid)
{
	uint32_t vpid;
	if (tabledb_rev(t, txn, RT_PID, spid, &vpid) != REV_MINE) return 0;
	int rc = tabledb_unmap_row(t, txn, RT_PID, vpid, spid);
	uint8_t kb[PROC_KEY_LEN];
	proc_key(kb, spid);
	MDB_val k = { PROC_KEY_LEN, kb };
	if (!rc) rc = mdb_del(txn, t->procs, &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Reserves n to most consecutive remapped vrids of a type at once (a
 * process's next fork children, its application's next private objects):
 * the first in *first, how many in *count (fewer where the counter wraps).
 * One transaction then serves many; vrids reserved and never used are
 * skipped, as the counter only moves forward. */
int tabledb_reserve_block(const struct tabledb *t, MDB_txn *txn, uint8_t type, uint32_t n, uint32_t most, uint32_t *first,
			  uint32_t *count)
{
	*count = 1;
	int rc = counter_next(t, txn, t->aid, t->aidlen, type, VRID_REMAP_BASE, first);
	uint32_t used = *first > VRID_REMAP_BASE ? *first - VRID_REMAP_BASE : 0;
	if (used / 8 > n) n = used / 8 < most ? used / 8 : most;
	/* counter_next hands out vpids below 0x7fffffff, then starts again. */
	if (n > 0x7fffffffu - *first) n = 0x7fffffffu - *first;
	if (rc || n <= 1) return rc;
	uint8_t kb[APPSHOT_AID_MAX + 2], vb[4];
	MDB_val k = { alloc_key(kb, t->aid, t->aidlen, type), kb }, v = { 4, vb };
	put_u32be(vb, *first + n >= 0x7fffffffu ? VRID_REMAP_BASE : *first + n);
	*count = n;
	return mdb_put(txn, t->alloc, &k, &v, 0);
}
