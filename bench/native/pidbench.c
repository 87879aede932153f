/*
 * pidbench: per-call cost of the process-ID calls appshot translates. The
 * same binary runs natively and under `appshot run`; bench/run.ts pairs the
 * two. Prints one JSON object.
 *
 *   pidbench KEY
 *
 * fork_waitpid_cpu and spawn_waitpid_cpu are the same calls timed by the
 * CPU time they cost (this process and its children), which the load of a
 * shared machine moves far less than wall time.
 *
 * KEY is taken like the other drivers' and not used: it creates no IPC
 * objects. Every child it makes is waited for before the next one starts,
 * so none outlives it.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>

#include "bench.h"
#include <unistd.h>

#define SPAWNED "/bin/true"

extern char **environ;

/* Where getpid's result goes, so that no call is left out. */
static volatile pid_t sink;

static void fail(const char *what)
{
	perror(what);
	exit(1);
}

/* CPU time of this process and of its reaped children, in ns: on a shared
 * machine wall time swings with the load, CPU time much less. */
static double cpu_ns(void)
{
	struct rusage self, kids;
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	double us = self.ru_utime.tv_sec * 1e6 + self.ru_utime.tv_usec + self.ru_stime.tv_sec * 1e6 + self.ru_stime.tv_usec +
		    kids.ru_utime.tv_sec * 1e6 + kids.ru_utime.tv_usec + kids.ru_stime.tv_sec * 1e6 + kids.ru_stime.tv_usec;
	return us * 1e3;
}

/* PER_CALL by CPU time (the caller's and its children's). */
#define PER_CALL_CPU(label, iters, body) PER_CALL_BY(cpu_ns, label, iters, body)

static void reap(pid_t child, const char *what)
{
	int status;
	if (waitpid(child, &status, 0) != child) fail(what);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "%s: child ended with status 0x%x\n", what, status);
		exit(1);
	}
}

static void signal_self(void)
{
	if (kill(getpid(), 0) != 0) fail("pidbench: kill");
}

/* A child that ends at once; _exit, so that nothing buffered in stdio is
 * printed twice. */
static void fork_wait(void)
{
	pid_t child = fork();
	if (child < 0) fail("pidbench: fork");
	if (child == 0) _exit(0);
	reap(child, "pidbench: fork + waitpid");
}

static void spawn_wait(void)
{
	static char *const argv[] = { SPAWNED, NULL };
	pid_t child;
	int r = posix_spawn(&child, SPAWNED, NULL, NULL, argv, environ);
	if (r != 0) {
		fprintf(stderr, "pidbench: posix_spawn %s: error %d\n", SPAWNED, r);
		exit(1);
	}
	reap(child, "pidbench: posix_spawn + waitpid");
}

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	int first = 1;
	printf("{");
	PER_CALL("getpid", 500000, sink = getpid());
	PER_CALL("kill_self_0", 100000, signal_self());
	/* A few hundred each: one is 0.1 to 1 ms. */
	PER_CALL("fork_waitpid", 300, fork_wait());
	PER_CALL("spawn_waitpid", 200, spawn_wait());
	PER_CALL_CPU("fork_waitpid_cpu", 300, fork_wait());
	PER_CALL_CPU("spawn_waitpid_cpu", 200, spawn_wait());
	printf("}\n");
	return 0;
}
