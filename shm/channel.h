/*
 * channel.h - a child's end of its master channel (shm/ipc.h: struct
 * ipc_cmd and its payload in one SOCK_SEQPACKET datagram): the reader
 * the workers and the cluster bridge share, and the config a CONFIG
 * command carries.  Failure policy: a malformed command is logged and
 * skipped; a closed or failed channel is the caller's to act on (it
 * stops: the master is gone).
 */
#ifndef XMPPD_CHANNEL_H
#define XMPPD_CHANNEL_H

#include <stddef.h>
#include "ipc.h"
#include "../lib/config.h"

/* Each well-formed command read, with its payload (cmd->len bytes). */
typedef void channel_cmd_fn(const struct ipc_cmd *cmd, const char *payload,
			    void *ctx);

/* Read every command waiting on fd (non-blocking): 0 once none is
 * left, -1 when the channel closed or failed (logged). */
int channel_read(int fd, channel_cmd_fn *cb, void *ctx);

/* The config of an IPC_CMD_CONFIG payload, with the command's
 * generation, the log level and file already switched to it; NULL
 * (logged) when it does not parse: the old one stays. */
struct config *channel_config(const struct ipc_cmd *cmd, const char *text,
			      size_t len);

#endif
