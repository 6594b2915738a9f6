/*
 * shm_test_map.h - the unit tests' harness for a shared-memory table
 * (shm/throttle.c, shm/caps.c, ...): SHM_TEST_MAP(name, prefix) defines
 * struct name { mem, size, t } with name_open(m, capacity), which maps
 * anonymous shared memory of prefix_size(capacity) (kept across fork()),
 * runs prefix_init and prefix_attach and asserts each step, and
 * name_close(m), which detaches and unmaps; shm_test_die_holding(), a
 * process SIGKILLed while it holds a table's lock.  Include after
 * criterion.h, sys/mman.h and the table's header.
 */
#ifndef XMPPD_TESTS_SHM_TEST_MAP_H
#define XMPPD_TESTS_SHM_TEST_MAP_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHM_TEST_MAP(name, prefix)                                            \
	struct name {                                                         \
		void *mem;                                                    \
		size_t size;                                                  \
		struct prefix *t;                                             \
	};                                                                    \
                                                                              \
	static void name##_open(struct name *m, uint32_t capacity)            \
	{                                                                     \
		const char *error = NULL;                                     \
		m->size = prefix##_size(capacity);                            \
		cr_assert_gt(m->size, 0);                                     \
		m->mem = mmap(NULL, m->size, PROT_READ | PROT_WRITE,          \
			      MAP_SHARED | MAP_ANONYMOUS, -1, 0);             \
		cr_assert_neq(m->mem, MAP_FAILED);                            \
		cr_assert_eq(prefix##_init(m->mem, m->size, capacity,         \
					   &error), 0, "%s", error);          \
		m->t = prefix##_attach(m->mem, &error);                       \
		cr_assert_not_null(m->t, "%s", error);                        \
	}                                                                     \
                                                                              \
	static void name##_close(struct name *m)                              \
	{                                                                     \
		prefix##_detach(&m->t);                                       \
		munmap(m->mem, m->size);                                      \
	}

/* A child takes lock, adds one to *seq (a record left mid-write) unless
 * seq is NULL, and is SIGKILLed holding it; reaped before this returns. */
static inline void shm_test_die_holding(pthread_mutex_t *lock,
					_Atomic uint32_t *seq)
{
	int pipefd[2];
	char c;
	cr_assert_eq(pipe(pipefd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		alarm(30);
		pthread_mutex_lock(lock);
		if (seq != NULL)
			atomic_fetch_add(seq, 1);
		(void)write(pipefd[1], "x", 1);
		pause();
		_exit(0);
	}
	cr_assert_eq(read(pipefd[0], &c, 1), 1);
	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	close(pipefd[0]);
	close(pipefd[1]);
}

#endif
