/*
 * shm_test_map.h - the unit tests' harness for a shared-memory table
 * (shm/throttle.c, shm/caps.c, ...): SHM_TEST_MAP(name, prefix) defines
 * struct name { mem, size, t } with name_open(m, capacity), which maps
 * anonymous shared memory of prefix_size(capacity) (kept across fork()),
 * runs prefix_init and prefix_attach and asserts each step, and
 * name_close(m), which detaches and unmaps.  Include after criterion.h,
 * sys/mman.h and the table's header.
 */
#ifndef XMPPD_TESTS_SHM_TEST_MAP_H
#define XMPPD_TESTS_SHM_TEST_MAP_H

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

#endif
