/*
 * secret.c - the cluster's shared secret file (secret.h).  Failure
 * policy: any doubt about the file is a refusal to start with its
 * reason; a cluster whose nodes have different secrets would fail
 * dialback and leak which accounts exist, which is worse than not
 * starting.
 */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int secret_file_load(const char *path, unsigned char key[SECRET_KEY_BYTES],
		     char *err, size_t errlen)
{
	unsigned char buf[SECRET_FILE_MAX + 1];
	struct stat st;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(err, errlen, "'%s': %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "'%s' is not a regular file", path);
		close(fd);
		return -1;
	}
	if (st.st_mode & S_IROTH) {
		snprintf(err, errlen, "'%s' is readable by every local user: "
			 "chmod o-r it (it makes the cluster's dialback "
			 "keys)", path);
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "'%s': %s", path,
				 strerror(errno));
			close(fd);
			sodium_memzero(buf, sizeof(buf));
			return -1;
		}
		if (n == 0 || (len += (size_t)n) == sizeof(buf))
			break;
	}
	close(fd);
	if (len < SECRET_FILE_MIN || len > SECRET_FILE_MAX) {
		snprintf(err, errlen, "'%s' has %s%zu bytes: it needs %d to "
			 "%d (head -c 64 /dev/urandom > FILE)", path,
			 len > SECRET_FILE_MAX ? "more than " : "",
			 len > SECRET_FILE_MAX ? (size_t)SECRET_FILE_MAX : len,
			 SECRET_FILE_MIN, SECRET_FILE_MAX);
		sodium_memzero(buf, sizeof(buf));
		return -1;
	}
	crypto_generichash(key, SECRET_KEY_BYTES, buf, len, NULL, 0);
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

static unsigned char cluster_key[SECRET_KEY_BYTES];
static int cluster_key_set;

void secret_cluster_seed(const unsigned char key[SECRET_KEY_BYTES])
{
	secret_derive(key, "xmppd cluster messages v2", cluster_key,
		      sizeof(cluster_key));
	cluster_key_set = 1;
}

int secret_cluster_mac(const char *subject, const void *data, size_t len,
		       unsigned char mac[SECRET_MAC_BYTES])
{
	crypto_generichash_state st;
	if (!cluster_key_set)
		return -1;
	crypto_generichash_init(&st, cluster_key, sizeof(cluster_key),
				SECRET_MAC_BYTES);
	crypto_generichash_update(&st, (const unsigned char *)subject,
				  strlen(subject) + 1);     /* with its NUL */
	crypto_generichash_update(&st, data, len);
	crypto_generichash_final(&st, mac, SECRET_MAC_BYTES);
	return 0;
}

int secret_cluster_check(const char *subject, const void *msg, size_t len,
			 size_t *len_r)
{
	unsigned char mac[SECRET_MAC_BYTES];
	if (len < SECRET_MAC_BYTES ||
	    secret_cluster_mac(subject, msg, len - SECRET_MAC_BYTES, mac) < 0 ||
	    sodium_memcmp(mac, (const unsigned char *)msg + len -
			  SECRET_MAC_BYTES, SECRET_MAC_BYTES) != 0)
		return -1;
	*len_r = len - SECRET_MAC_BYTES;
	return 0;
}

void secret_derive(const unsigned char key[SECRET_KEY_BYTES],
		   const char *label, unsigned char *out, size_t outlen)
{
	crypto_generichash(out, outlen, (const unsigned char *)label,
			   strlen(label), key, SECRET_KEY_BYTES);
}
