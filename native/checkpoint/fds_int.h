/*
 * What the parts of the descriptor capture share (fds.c: the walk, files,
 * devices, the tables; fds_pipe.c: pipes and FIFOs; fds_sock.c: sockets;
 * fds_anon.c: eventfd, timerfd, signalfd, epoll). Not for the engine: its
 * API is fds.h.
 */
#ifndef APPSHOT_CKPT_FDS_INT_H
#define APPSHOT_CKPT_FDS_INT_H

#include "fds.h"
#include "json.h"

#include <sys/stat.h>

/* One open file description, described once. */
struct ofd {
	int id;        /* 1.., its place in the files section */
	pid_t spid;    /* a process and descriptor that has it, for kcmp */
	int fd;
	int minfd;     /* the lowest number it has in any process */
	dev_t dev;     /* of the object (a Unix socket's inode names its peer) */
	ino_t ino;
	cJSON *json;
	/* pipes: which pipe (index into fds_capture.pipes) and end */
	int pipe;
	int mode; /* O_RDONLY, O_WRONLY, O_RDWR */
	/* epoll: the interest list's entries not yet tied to an ofd
	 * ([[tfd, events, "data", toff], ...]), and the table entry of the process
	 * that registers them again (the first that has it) */
	cJSON *pending;
	cJSON *entry;
};

struct fds_proc {
	pid_t spid;
	uint32_t vpid;
	char comm[64];
	cJSON *table;
};

struct fds_pipe {
	ino_t ino;
	int size;
	unsigned char *data;
	size_t len;
	char *path; /* a FIFO's, when it still has one */
	int readers, writers; /* ofds of the application on each end */
	int captured; /* data read (at the first end that can read) */
};

struct fds_sock;

struct fds_capture {
	const struct ckpt_ctx *ctx;
	struct ofd *ofds;
	int n, cap;
	struct fds_proc *procs;
	int nprocs, capprocs;
	struct fds_pipe *pipes;
	int npipes, cappipes;
	struct fds_sock *socks;
	int nsocks, capsocks;
	int *order;   /* ofd indices in kcmp's order of open files */
	int norder, caporder;
	int finished; /* every process seen: pairs and epoll targets settled */
	char *text;   /* the fdinfo being read */
	size_t textcap;
};

struct fds_restore {
	const struct ckpt_ctx *ctx;
	const cJSON *files;
	int base;
	int n;
	const cJSON **ofd; /* the i-th ofd's JSON */
	int *fd;           /* its descriptor (base + i once placed) */
	int *pipe_fd;      /* per pipe: read end, write end, FIFO holder; -1 once given away */
	int npipes;
};

void fds_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
char *fds_b64_encode(const unsigned char *p, size_t n);
unsigned char *fds_b64_decode(const char *s, size_t *n);
double fds_get_num(const cJSON *o, const char *name, double dflt);
const char *fds_field(const char *text, const char *name);
/* A copy of spid's descriptor fd in this process (close-on-exec), or -1. */
int fds_pidfd_getfd(pid_t spid, int fd);
/* Binary search of c->order by vs (kcmp's answer for key against an ofd:
 * 0 same, 1 key less, 2 key greater, -1 error): 1 found at *at, 0 not
 * (*at where it would go), -1 kcmp failed. */
int fds_order_find(struct fds_capture *c, long (*vs)(const struct ofd *, const void *), const void *key, int *at);
/* vs for a descriptor: key is {spid, fd}. */
long fds_file_vs(const struct ofd *o, const void *key);
struct ofd *fds_new_ofd(struct fds_capture *c, struct fds_proc *p, int fd, const struct stat *st, const char *kind, int flags);

/* fds_pipe.c */
int fds_describe_pipe(struct fds_capture *c, struct fds_proc *p, int fd, const char *link, const struct stat *st, int flags,
		      char *err, size_t errlen);
void fds_pipes_drop(struct fds_capture *c, int from);
void fds_pipes_finish(struct fds_capture *c);
cJSON *fds_pipes_json(struct fds_capture *c);
int fds_pipes_open(struct fds_restore *r, char *err, size_t errlen);
void fds_pipes_close_spare(struct fds_restore *r);

/* fds_sock.c */
int fds_describe_socket(struct fds_capture *c, struct fds_proc *p, int fd, const struct stat *st, int flags,
			const char *fdinfo, char *err, size_t errlen);
/* Pairs the sockets once every process is described. */
void fds_socks_finish(struct fds_capture *c);
/* Forgets the sockets of ofds from index first_ofd on (a refused process's). */
void fds_socks_drop(struct fds_capture *c, int first_ofd);
int fds_make_sock(struct fds_restore *r, int i, const char *kind, const cJSON *o, char *err, size_t errlen);
/* fds_anon.c */
int fds_describe_anon(struct fds_capture *c, struct fds_proc *p, int fd, const char *what, const struct stat *st, int flags,
		      const char *fdinfo, char *err, size_t errlen);
/* Sockets and anonymous kinds at restore: the descriptor, or -1 and err. */
int fds_make_other(struct fds_restore *r, int i, const char *kind, const cJSON *o, char *err, size_t errlen);
/* Ties pending epoll entries to the ofds of their targets (kcmp
 * KCMP_EPOLL_TFD); final: the last call, which drops what is left. */
void fds_epolls_resolve(struct fds_capture *c, int final);
int fds_register_epolls(struct fds_restore *r, const cJSON *table, char *err, size_t errlen);

#endif
