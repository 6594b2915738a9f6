/*
 * compcfg.h - the list of external components (XEP-0114) and their
 * secrets: the file named by component.secrets_file, one component a
 * line,
 *
 *     # comment
 *     DOMAIN SECRET [subdomains]
 *
 * DOMAIN is prepared as a JID domainpart; SECRET is one word of
 * printable ASCII (no space); "subdomains" lets the component also
 * serve every name under DOMAIN.  The file must not be readable by
 * group or others (mode 0600 or 0400).  The <handshake/> check lives
 * here too: hex(SHA1(stream id + secret)), compared in constant time.
 * Failure policy: a bad file is refused whole with "path:line: reason";
 * nothing is half-loaded.
 */
#ifndef XMPPD_COMPCFG_H
#define XMPPD_COMPCFG_H

#include <stddef.h>

#define COMPCFG_MAX_FILE (1u << 20)     /* bytes of the secrets file */
#define COMPCFG_MAX_SECRET 1023         /* bytes of one secret */
#define COMPCFG_MAX_DOMAIN 255          /* bytes of one prepared domain */
#define COMPCFG_DIGEST_HEX 40           /* hex SHA-1 */

struct compcfg_entry {
	char *domain;           /* prepared (RFC 7622) */
	char *secret;
	int subdomains;         /* also serves *.domain */
};

struct compcfg {
	unsigned n;
	struct compcfg_entry *e;
};

/* Parse the file's text (len bytes, NULs refused); name is used in
 * error messages.  0 with *list_r (compcfg_free it), or -1 with
 * *error_r ("name:line: reason", static buffer). */
int compcfg_parse(const char *name, const char *text, size_t len,
		  struct compcfg **list_r, const char **error_r);
/* Read and parse path, refusing a file group or others may read. */
int compcfg_load(const char *path, struct compcfg **list_r,
		 const char **error_r);
void compcfg_free(struct compcfg **list);

/* The component serving domain (prepared): its own entry, or that of
 * the nearest parent domain with subdomains; NULL when none. */
const struct compcfg_entry *compcfg_find(const struct compcfg *list,
					 const char *domain);
/* The entry for exactly domain, NULL when none. */
const struct compcfg_entry *compcfg_exact(const struct compcfg *list,
					  const char *domain);
/* Whether a component's domain is one of the space-separated hosts:
 * the first such domain, or NULL. */
const char *compcfg_clash(const struct compcfg *list, const char *hosts);

/* XEP-0114 section 3: whether text (len bytes, the <handshake/>'s
 * character data) is hex(SHA1(stream_id + secret)); hex digits of
 * either case, surrounding whitespace ignored.  1 yes, 0 no. */
int compcfg_handshake_ok(const char *stream_id, const char *secret,
			 const char *text, size_t len);
/* The expected digest as lowercase hex into out (41 bytes). */
void compcfg_handshake_digest(const char *stream_id, const char *secret,
			      char out[COMPCFG_DIGEST_HEX + 1]);

#endif
