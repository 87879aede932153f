/*
 * ckptthreads: threads for the checkpoint engine's tests. Three threads
 * count, one sleeps in nanosleep and counts its wake-ups, one waits on a
 * condition variable (a futex). The main thread prints
 * "tick PID C0 C1 C2 SLEEPS" per tick; once WAKEFILE exists it wakes the
 * waiter (which prints "woke") and sends SIGUSR1 to the sleeper with
 * pthread_kill (glibc signals a thread by the TID cached in its thread
 * block), printing "pthread_kill RESULT" and, once the handler ran,
 * "signalled".
 *   ckptthreads INTERVAL_MS WAKEFILE
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile long counts[3], sleeps;
static volatile sig_atomic_t raised;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int go;

static void nap(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void *counter(void *arg)
{
	long i = (long)arg;
	for (;;) counts[i]++, nap(1);
	return NULL;
}

static void *sleeper(void *arg)
{
	for (;;) nap(100), sleeps++;
	return NULL;
}

static void *waiter(void *arg)
{
	pthread_mutex_lock(&lock);
	while (!go) pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	printf("woke\n");
	fflush(stdout);
	return NULL;
}

static void on_usr1(int sig) { raised = raised ? raised : 1; }

int main(int argc, char **argv)
{
	long ms = argc > 1 ? atol(argv[1]) : 10;
	const char *wakefile = argc > 2 ? argv[2] : "/nonexistent";
	pthread_t t, sleeper_thread;
	signal(SIGUSR1, on_usr1);
	for (long i = 0; i < 3; i++) pthread_create(&t, NULL, counter, (void *)i);
	pthread_create(&sleeper_thread, NULL, sleeper, NULL);
	pthread_create(&t, NULL, waiter, NULL);
	int woken = 0;
	for (;;) {
		printf("tick %d %ld %ld %ld %ld\n", (int)getpid(), counts[0], counts[1], counts[2], sleeps);
		if (!woken && access(wakefile, F_OK) == 0) {
			pthread_mutex_lock(&lock);
			go = woken = 1;
			pthread_cond_signal(&cond);
			pthread_mutex_unlock(&lock);
			printf("pthread_kill %d\n", pthread_kill(sleeper_thread, SIGUSR1));
		}
		if (raised == 1) {
			raised = 2;
			printf("signalled\n");
		}
		fflush(stdout);
		nap(ms);
	}
}
