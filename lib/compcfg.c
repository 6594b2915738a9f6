/*
 * compcfg.c - the components' secrets file and the XEP-0114 handshake
 * digest (compcfg.h).  Failure policy: the whole file or nothing; a
 * reason names the file and line.  Secrets are wiped before they are
 * freed.
 */
#include "compcfg.h"
#include "arena.h"
#include "jid.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

static char compcfg_error[512];

static int compcfg_fail(const char **error_r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int compcfg_fail(const char **error_r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(compcfg_error, sizeof(compcfg_error), fmt, ap);
	va_end(ap);
	*error_r = compcfg_error;
	return -1;
}

void compcfg_free(struct compcfg **list)
{
	if (*list == NULL)
		return;
	for (unsigned i = 0; i < (*list)->n; i++) {
		struct compcfg_entry *e = &(*list)->e[i];
		free(e->domain);
		if (e->secret != NULL) {
			OPENSSL_cleanse(e->secret, strlen(e->secret));
			free(e->secret);
		}
	}
	free((*list)->e);
	free(*list);
	*list = NULL;
}

/* Next word of [*s, end): its start and length, or NULL at the end. */
static const char *compcfg_word(const char **s, const char *end, size_t *len_r)
{
	const char *p = *s;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p == end) {
		*s = p;
		return NULL;
	}
	const char *w = p;
	while (p < end && *p != ' ' && *p != '\t')
		p++;
	*len_r = (size_t)(p - w);
	*s = p;
	return w;
}

static int compcfg_line(struct compcfg *list, struct arena *a,
			const char *name, unsigned lineno, const char *s,
			const char *end, const char **error_r)
{
	size_t dlen, slen, olen;
	const char *dom = compcfg_word(&s, end, &dlen);
	if (dom == NULL || *dom == '#')
		return 0;
	const char *sec = compcfg_word(&s, end, &slen);
	const char *opt = compcfg_word(&s, end, &olen);
	size_t extra;
	if (sec == NULL)
		return compcfg_fail(error_r, "%s:%u: no secret after the "
				    "domain", name, lineno);
	if (compcfg_word(&s, end, &extra) != NULL)
		return compcfg_fail(error_r, "%s:%u: unexpected words after "
				    "the options", name, lineno);
	int sub = 0;
	if (opt != NULL) {
		if (olen != 10 || memcmp(opt, "subdomains", 10) != 0)
			return compcfg_fail(error_r, "%s:%u: unknown option "
					    "'%.*s' (only 'subdomains')", name,
					    lineno, (int)(olen > 64 ? 64 : olen),
					    opt);
		sub = 1;
	}
	if (slen > COMPCFG_MAX_SECRET)
		return compcfg_fail(error_r, "%s:%u: secret longer than %u "
				    "bytes", name, lineno, COMPCFG_MAX_SECRET);
	for (size_t i = 0; i < slen; i++)
		if ((unsigned char)sec[i] <= 0x20 ||
		    (unsigned char)sec[i] >= 0x7f)
			return compcfg_fail(error_r, "%s:%u: the secret must be "
					    "printable ASCII", name, lineno);
	const char *prepped, *why;
	if (jid_prep_part(a, JID_PART_DOMAIN, dom, dlen, &prepped, &why) < 0)
		return compcfg_fail(error_r, "%s:%u: bad domain: %s", name,
				    lineno, why);
	if (strlen(prepped) > COMPCFG_MAX_DOMAIN || strchr(prepped, '.') == NULL)
		return compcfg_fail(error_r, "%s:%u: '%s' is not a domain "
				    "name with a dot", name, lineno, prepped);
	if (compcfg_exact(list, prepped) != NULL)
		return compcfg_fail(error_r, "%s:%u: %s listed twice", name,
				    lineno, prepped);
	struct compcfg_entry *grown = realloc(list->e, (list->n + 1) *
					      sizeof(*grown));
	if (grown == NULL)
		return compcfg_fail(error_r, "%s:%u: out of memory", name,
				    lineno);
	list->e = grown;
	struct compcfg_entry *e = &list->e[list->n];
	e->domain = strdup(prepped);
	e->secret = strndup(sec, slen);
	e->subdomains = sub;
	list->n++;      /* compcfg_free frees what is there */
	if (e->domain == NULL || e->secret == NULL)
		return compcfg_fail(error_r, "%s:%u: out of memory", name,
				    lineno);
	return 0;
}

int compcfg_parse(const char *name, const char *text, size_t len,
		  struct compcfg **list_r, const char **error_r)
{
	struct compcfg *list = calloc(1, sizeof(*list));
	struct arena a;
	unsigned lineno = 0;
	if (list == NULL)
		return compcfg_fail(error_r, "%s: out of memory", name);
	arena_init(&a, 1024);
	const char *s = text, *end = text + len;
	int rc = 0;
	while (rc == 0 && s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *le = nl != NULL ? nl : end;
		lineno++;
		const char *ce = le;
		if (ce > s && ce[-1] == '\r')
			ce--;
		if (memchr(s, '\0', (size_t)(le - s)) != NULL)
			rc = compcfg_fail(error_r, "%s:%u: NUL byte", name,
					  lineno);
		else
			rc = compcfg_line(list, &a, name, lineno, s, ce,
					  error_r);
		s = nl != NULL ? nl + 1 : end;
	}
	arena_free(&a);
	if (rc < 0) {
		compcfg_free(&list);
		return -1;
	}
	*list_r = list;
	return 0;
}

int compcfg_load(const char *path, struct compcfg **list_r,
		 const char **error_r)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return compcfg_fail(error_r, "component.secrets_file: open(%s) "
				    "failed: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return compcfg_fail(error_r, "component.secrets_file: %s is "
				    "not a regular file", path);
	}
	if (st.st_mode & 077) {
		close(fd);
		return compcfg_fail(error_r, "component.secrets_file: %s may "
				    "be read by group or others (mode %04o): "
				    "chmod 600 it", path,
				    (unsigned)(st.st_mode & 07777));
	}
	if (st.st_size > (off_t)COMPCFG_MAX_FILE) {
		close(fd);
		return compcfg_fail(error_r, "component.secrets_file: %s is "
				    "larger than %u bytes", path,
				    COMPCFG_MAX_FILE);
	}
	size_t len = (size_t)st.st_size, got = 0;
	char *text = malloc(len + 1);
	if (text == NULL) {
		close(fd);
		return compcfg_fail(error_r, "%s: out of memory", path);
	}
	while (got < len) {
		ssize_t n = read(fd, text + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	int rc = compcfg_parse(path, text, got, list_r, error_r);
	OPENSSL_cleanse(text, len);
	free(text);
	return rc;
}

const struct compcfg_entry *compcfg_exact(const struct compcfg *list,
					  const char *domain)
{
	for (unsigned i = 0; list != NULL && i < list->n; i++)
		if (strcmp(list->e[i].domain, domain) == 0)
			return &list->e[i];
	return NULL;
}

const struct compcfg_entry *compcfg_find(const struct compcfg *list,
					 const char *domain)
{
	const struct compcfg_entry *e = compcfg_exact(list, domain);
	if (e != NULL)
		return e;
	for (const char *p = strchr(domain, '.'); p != NULL;
	     p = strchr(p + 1, '.')) {
		e = compcfg_exact(list, p + 1);
		if (e != NULL)
			return e->subdomains ? e : NULL;
	}
	return NULL;
}

const char *compcfg_clash(const struct compcfg *list, const char *hosts)
{
	for (unsigned i = 0; list != NULL && i < list->n; i++) {
		size_t n = strlen(list->e[i].domain);
		for (const char *h = hosts; *h != '\0';) {
			size_t skip = strspn(h, " \t,");
			h += skip;
			size_t hl = strcspn(h, " \t,");
			if (hl == n && strncmp(h, list->e[i].domain, n) == 0)
				return list->e[i].domain;
			h += hl;
		}
	}
	return NULL;
}

void compcfg_handshake_digest(const char *stream_id, const char *secret,
			      char out[COMPCFG_DIGEST_HEX + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[SHA_DIGEST_LENGTH];
	unsigned mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, stream_id, strlen(stream_id)) != 1 ||
	    EVP_DigestUpdate(ctx, secret, strlen(secret)) != 1 ||
	    EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 ||
	    mdlen != SHA_DIGEST_LENGTH) {
		/* no digest: a value no handshake text can equal */
		EVP_MD_CTX_free(ctx);
		memset(out, 'x', COMPCFG_DIGEST_HEX);
		out[COMPCFG_DIGEST_HEX] = '\0';
		return;
	}
	EVP_MD_CTX_free(ctx);
	for (unsigned i = 0; i < SHA_DIGEST_LENGTH; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[COMPCFG_DIGEST_HEX] = '\0';
	OPENSSL_cleanse(md, sizeof(md));
}

int compcfg_handshake_ok(const char *stream_id, const char *secret,
			 const char *text, size_t len)
{
	char want[COMPCFG_DIGEST_HEX + 1], got[COMPCFG_DIGEST_HEX];
	while (len > 0 && (*text == ' ' || *text == '\t' || *text == '\r' ||
			   *text == '\n')) {
		text++;
		len--;
	}
	while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t' ||
			   text[len - 1] == '\r' || text[len - 1] == '\n'))
		len--;
	if (len != COMPCFG_DIGEST_HEX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char ch = text[i];
		got[i] = ch >= 'A' && ch <= 'F' ? (char)(ch - 'A' + 'a') : ch;
	}
	compcfg_handshake_digest(stream_id, secret, want);
	int ok = CRYPTO_memcmp(want, got, COMPCFG_DIGEST_HEX) == 0;
	OPENSSL_cleanse(want, sizeof(want));
	return ok;
}
