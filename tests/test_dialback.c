/*
 * test_dialback.c - XEP-0185 dialback keys and XEP-0220 element parsing
 * (worker/dialback.c).  Keys are checked against an independent
 * computation written here directly on OpenSSL (the formula of XEP-0185
 * section 2: HMAC-SHA256 keyed with the hex of SHA256(secret), over
 * "Receiving Originating StreamID", hex output), so a slip shared by
 * the code and its own checks cannot hide.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include "arena.h"
#include "worker/xml.h"
#include "worker/dialback.h"
#include "secret.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static void independent(const char *secret, const char *r, const char *o,
			const char *id, char out[65])
{
	unsigned char d[32], mac[32];
	unsigned int dlen = sizeof(d), mlen = sizeof(mac);
	char khex[65], text[1024];
	EVP_Digest(secret, strlen(secret), d, &dlen, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		sprintf(khex + 2 * i, "%02x", d[i]);
	snprintf(text, sizeof(text), "%s %s %s", r, o, id);
	HMAC(EVP_sha256(), khex, 64, (const unsigned char *)text,
	     strlen(text), mac, &mlen);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", mac[i]);
}

Test(dialback, key_matches_xep0185)
{
	const char *cases[][4] = {
		{ "s3cr3tf0rd14lb4ck", "example.net", "example.com",
		  "D60000229F" },
		{ "x", "a.test", "b.test", "0123456789abcdef01234567" },
		{ "long secret with spaces", "xn--bcher-kva.example",
		  "b\xc3\xbc" "cher.example", "id" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char want[65], got[DIALBACK_KEY_HEX + 1];
		independent(cases[i][0], cases[i][1], cases[i][2], cases[i][3],
			    want);
		cr_assert_eq(dialback_key_with(cases[i][0], cases[i][1],
					       cases[i][2], cases[i][3], got), 0);
		cr_expect_str_eq(got, want, "case %zu", i);
	}
}

Test(dialback, own_key_accepted_others_not)
{
	char k[DIALBACK_KEY_HEX + 1], other[DIALBACK_KEY_HEX + 1];
	dialback_init_secret();
	cr_assert_eq(dialback_key("r.test", "o.test", "s1", k), 0);
	cr_expect_eq(dialback_key_ok("r.test", "o.test", "s1", k), 1);
	/* any input changed: another key */
	cr_expect_eq(dialback_key_ok("r.test", "o.test", "s2", k), 0);
	cr_expect_eq(dialback_key_ok("o.test", "r.test", "s1", k), 0);
	cr_expect_eq(dialback_key_ok("r.test", "x.test", "s1", k), 0);
	memcpy(other, k, sizeof(other));
	other[0] = other[0] == 'a' ? 'b' : 'a';
	cr_expect_eq(dialback_key_ok("r.test", "o.test", "s1", other), 0);
	cr_expect_eq(dialback_key_ok("r.test", "o.test", "s1", ""), 0);
	/* the same secret gives the same key (every worker answers) */
	cr_assert_eq(dialback_key("r.test", "o.test", "s1", other), 0);
	cr_expect_str_eq(other, k);
}

static void write_file(const char *path, const void *data, size_t len,
		       mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0, "%s", path);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	cr_assert_eq(fchmod(fd, mode), 0);
	close(fd);
}

/* Two nodes of a cluster with the same cluster.secret_file make keys
 * the other accepts; another file, or a node without one, does not. */
Test(dialback, cluster_secret_file_shared_by_nodes)
{
	char dir[] = "/tmp/xmppd-secret-XXXXXX", a[64], b[64];
	unsigned char key[SECRET_KEY_BYTES], bytes[64];
	char k[DIALBACK_KEY_HEX + 1], err[256];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/b", dir);
	randombytes_buf(bytes, sizeof(bytes));
	write_file(a, bytes, sizeof(bytes), 0600);
	cr_assert_eq(secret_file_load(a, key, err, sizeof(err)), 0, "%s", err);
	dialback_seed_secret(key);      /* node 1 */
	cr_assert_eq(dialback_key("r.test", "o.test", "s1", k), 0);
	dialback_init_secret();         /* a random secret in between */
	cr_expect_eq(dialback_key_ok("r.test", "o.test", "s1", k), 0);
	cr_assert_eq(secret_file_load(a, key, err, sizeof(err)), 0, "%s", err);
	dialback_seed_secret(key);      /* node 2, same file */
	cr_expect_eq(dialback_key_ok("r.test", "o.test", "s1", k), 1);
	bytes[0] ^= 1;                  /* another cluster's file */
	write_file(b, bytes, sizeof(bytes), 0600);
	cr_assert_eq(secret_file_load(b, key, err, sizeof(err)), 0, "%s", err);
	dialback_seed_secret(key);
	cr_expect_eq(dialback_key_ok("r.test", "o.test", "s1", k), 0);

	/* refusals, each with its reason */
	write_file(b, bytes, 31, 0600);
	cr_expect_eq(secret_file_load(b, key, err, sizeof(err)), -1);
	cr_expect(strstr(err, "has 31 bytes: it needs 32 to 4096") != NULL,
		  "%s", err);
	write_file(b, bytes, sizeof(bytes), 0644);
	cr_expect_eq(secret_file_load(b, key, err, sizeof(err)), -1);
	cr_expect(strstr(err, "readable by every local user") != NULL, "%s",
		  err);
	cr_expect_eq(secret_file_load(dir, key, err, sizeof(err)), -1);
	cr_expect(strstr(err, "not a regular file") != NULL, "%s", err);
	unlink(b);
	cr_expect_eq(secret_file_load(b, key, err, sizeof(err)), -1);
	cr_expect(strstr(err, "No such file") != NULL, "%s", err);
	unlink(a);
	rmdir(dir);
}

static int parse(struct arena *a, const char *text, struct dialback_elem *d,
		 const char **error_r)
{
	struct xml_node *n = xml_parse_in(a, text, strlen(text),
					  "jabber:server", error_r);
	cr_assert_not_null(n, "%s", text);
	return dialback_parse(a, n, d, error_r);
}

#define DB "xmlns:db='jabber:server:dialback'"

Test(dialback, parse)
{
	struct arena a;
	struct dialback_elem d;
	const char *error;
	arena_init(&a, 4096);
	cr_assert_eq(parse(&a, "<db:result " DB " from='Remote.Example' "
			   "to='localhost'> k3y </db:result>", &d, &error), 0);
	cr_expect_eq(d.kind, DIALBACK_RESULT);
	cr_expect_eq(d.type, DIALBACK_REQUEST);
	cr_expect_str_eq(d.from, "remote.example");     /* prepared */
	cr_expect_str_eq(d.key, "k3y");                 /* trimmed */
	cr_assert_eq(parse(&a, "<db:verify " DB " from='a.test' to='b.test' "
			   "id='i1' type='valid'/>", &d, &error), 0);
	cr_expect_eq(d.kind, DIALBACK_VERIFY);
	cr_expect_eq(d.type, DIALBACK_VALID);
	cr_expect_str_eq(d.id, "i1");
	cr_expect_null(d.key);
	cr_assert_eq(parse(&a, "<db:result " DB " from='a.test' to='b.test' "
			   "type='error'><error type='cancel'><item-not-found "
			   "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
			   "</error></db:result>", &d, &error), 0);
	cr_expect_eq(d.type, DIALBACK_ERROR);
	cr_expect_str_eq(d.error, "item-not-found");
	/* refused */
	const char *bad[] = {
		"<db:result " DB " to='b.test'>k</db:result>",
		"<db:result " DB " from='u@a.test' to='b.test'>k</db:result>",
		"<db:result " DB " from='a.test/r' to='b.test'>k</db:result>",
		"<db:result " DB " from='a.test' to='b.test'></db:result>",
		"<db:result " DB " from='a.test' to='b.test'>k e y</db:result>",
		"<db:result " DB " from='a.test' to='b.test' type='maybe'/>",
		"<db:verify " DB " from='a.test' to='b.test'>k</db:verify>",
		"<db:other " DB " from='a.test' to='b.test'>k</db:other>",
		"<result from='a.test' to='b.test'>k</result>",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(parse(&a, bad[i], &d, &error), -1, "%s", bad[i]);
	arena_free(&a);
}

/* The cluster's messages on NATS (lib/secret.c): a node with the same
 * secret file accepts what another signed; another subject, a changed
 * byte, a cut message or another file's key do not pass. */
Test(dialback, cluster_messages_signed)
{
	unsigned char key[SECRET_KEY_BYTES], msg[64 + SECRET_MAC_BYTES];
	size_t len;
	cr_expect_eq(secret_cluster_mac("s", "x", 1, msg), -1, "no key yet");
	memset(key, 7, sizeof(key));
	secret_cluster_seed(key);
	memcpy(msg, "a directory batch", 17);
	cr_assert_eq(secret_cluster_mac("xmppd.c.dir", msg, 17, msg + 17), 0);
	cr_expect_eq(secret_cluster_check("xmppd.c.dir", msg,
					  17 + SECRET_MAC_BYTES, &len), 0);
	cr_expect_eq(len, 17);
	cr_expect_eq(secret_cluster_check("xmppd.c.hb", msg,
					  17 + SECRET_MAC_BYTES, &len), -1);
	cr_expect_eq(secret_cluster_check("xmppd.c.dir", msg,
					  16 + SECRET_MAC_BYTES, &len), -1);
	cr_expect_eq(secret_cluster_check("xmppd.c.dir", msg, 10, &len), -1);
	msg[3] ^= 1;
	cr_expect_eq(secret_cluster_check("xmppd.c.dir", msg,
					  17 + SECRET_MAC_BYTES, &len), -1);
	msg[3] ^= 1;
	key[0] = 8;
	secret_cluster_seed(key);       /* another cluster's file */
	cr_expect_eq(secret_cluster_check("xmppd.c.dir", msg,
					  17 + SECRET_MAC_BYTES, &len), -1);
}
