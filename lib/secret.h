/*
 * secret.h - the cluster's shared secret (cluster.secret_file): every
 * node of a cluster must make the same server dialback keys (XEP-0185:
 * another node may be asked to verify a key this one sent) and the
 * same SASL answers for unknown accounts (or a client could tell an
 * account exists by asking two nodes).  The file is read once by the
 * master, before the workers are forked; each use gets a key of its
 * own derived from it, so no two uses share key material.
 */
#ifndef XMPPD_SECRET_H
#define XMPPD_SECRET_H

#include <stddef.h>

#define SECRET_KEY_BYTES 32
#define SECRET_FILE_MIN 32      /* bytes of the file, at least */
#define SECRET_FILE_MAX 4096

/* Read path into key (BLAKE2b of its contents).  -1 with a one-line
 * reason in err: unreadable, shorter than SECRET_FILE_MIN bytes,
 * longer than SECRET_FILE_MAX, not a regular file, or readable by
 * every local user. */
int secret_file_load(const char *path, unsigned char key[SECRET_KEY_BYTES],
		     char *err, size_t errlen);

/* The key of one use (label, e.g. "dialback"), from the file's key. */
void secret_derive(const unsigned char key[SECRET_KEY_BYTES],
		   const char *label, unsigned char *out, size_t outlen);

/* ---- the cluster's messages on NATS (cluster/) ---------------------
 * Every message a bridge publishes ends with a MAC of its subject and
 * payload under a key derived from the file ("xmppd cluster messages
 * v1"): a NATS client without the file cannot forge heartbeats,
 * directory events or stanza frames.  (A recorded message can be
 * replayed; the sequence numbers and incarnations in them make most
 * replays stale.) */
#define SECRET_MAC_BYTES 16

/* Master, before forking: the messages' key from the file's key. */
void secret_cluster_seed(const unsigned char key[SECRET_KEY_BYTES]);
/* The MAC of (subject, data) into mac; 0, or -1 when no key was set. */
int secret_cluster_mac(const char *subject, const void *data, size_t len,
		       unsigned char mac[SECRET_MAC_BYTES]);
/* A message as published (payload then MAC): its payload length in
 * *len_r when the MAC is right, else -1. */
int secret_cluster_check(const char *subject, const void *msg, size_t len,
			 size_t *len_r);

#endif
