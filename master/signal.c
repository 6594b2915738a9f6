/*
 * signal.c - the master's signal handlers only set a flag and write one
 * byte to a self-pipe that wakes the loop (Postfix master_sig.c).  The
 * loop clears each flag before acting on it.
 */
#include "master.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

volatile sig_atomic_t master_sig_chld, master_sig_term, master_sig_hup,
	master_sig_usr1;
static int wake_pipe[2] = { -1, -1 };

static void master_sig_handler(int sig)
{
	int saved_errno = errno;
	switch (sig) {
	case SIGCHLD: master_sig_chld = 1; break;
	case SIGTERM:
	case SIGINT: master_sig_term = 1; break;
	case SIGHUP: master_sig_hup = 1; break;
	case SIGUSR1: master_sig_usr1 = 1; break;
	default: break;
	}
	ssize_t n = write(wake_pipe[1], "", 1);
	(void)n;
	errno = saved_errno;
}

int master_signal_init(int *wake_fd_r, const char **error_r)
{
	static const int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
	struct sigaction sa;

	if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		*error_r = "pipe() failed";
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = master_sig_handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (unsigned i = 0; i < ARRAY_SIZE(sigs); i++)
		sigaction(sigs[i], &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	*wake_fd_r = wake_pipe[0];
	return 0;
}

void master_signal_drain(void)
{
	char buf[64];
	while (read(wake_pipe[0], buf, sizeof(buf)) > 0)
		;
}

/* A forked worker starts with default handlers of its own. */
void master_signal_block_in_child(void)
{
	static const int sigs[] = { SIGCHLD, SIGHUP, SIGUSR1 };
	for (unsigned i = 0; i < ARRAY_SIZE(sigs); i++)
		signal(sigs[i], SIG_DFL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	if (wake_pipe[0] >= 0) {
		close(wake_pipe[0]);
		close(wake_pipe[1]);
	}
}
