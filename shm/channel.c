/*
 * channel.c - the master channel's reader (channel.h), one for the
 * workers and the cluster bridge: they differ only in what each
 * command does.  Failure policy: channel.h.
 */
#include "channel.h"
#include "../lib/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int channel_read(int fd, channel_cmd_fn *cb, void *ctx)
{
	static char msg[sizeof(struct ipc_cmd) + IPC_CMD_PAYLOAD_MAX];
	struct ipc_cmd cmd;
	ssize_t n;
	while ((n = recv(fd, msg, sizeof(msg), MSG_DONTWAIT)) != 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n < 0)
			break;
		memcpy(&cmd, msg, (size_t)n < sizeof(cmd) ? (size_t)n :
		       sizeof(cmd));
		if ((size_t)n < sizeof(cmd) || cmd.version != IPC_VERSION ||
		    cmd.len != (size_t)n - sizeof(cmd)) {
			log_error("bad command from the master (%zd bytes)", n);
			continue;
		}
		cb(&cmd, msg + sizeof(cmd), ctx);
	}
	log_error("master channel closed: exiting");
	return -1;
}

struct config *channel_config(const struct ipc_cmd *cmd, const char *text,
			      size_t len)
{
	const char *error;
	struct config *cfg = config_new();
	char *copy = strndup(text, len);
	if (copy == NULL ||
	    config_parse_string(cfg, "reload", copy, &error) < 0) {
		log_error("config generation %llu refused: %s",
			  (unsigned long long)cmd->generation,
			  copy ? error : "out of memory");
		config_free(&cfg);
		free(copy);
		return NULL;
	}
	free(copy);
	cfg->generation = cmd->generation;
	log_set_level((enum log_level)cfg->log_level);
	if (log_open(cfg->log_file) < 0)
		log_error("open(%s) failed: %m", cfg->log_file);
	return cfg;
}
