/*
 * fuzz_compcfg.c - the components' secrets file and the XEP-0114
 * handshake check (lib/compcfg.c).  Properties:
 *  - no memory error or undefined behaviour; an error names
 *    "fuzz:line: reason";
 *  - every entry of a file that parses has a domain with a dot and a
 *    non-empty printable secret, no domain twice, and compcfg_exact and
 *    compcfg_find find each entry by its own domain;
 *  - the handshake check accepts the digest it computes (in either
 *    case, with surrounding whitespace) and refuses the input unless the
 *    input is that digest.
 * Input: the first byte splits it: the part before the first NUL is the
 * file; after it, "ID\nTEXT" for the handshake check against the first
 * entry's secret (or "s").
 */
#include "fuzz.h"
#include "compcfg.h"

#include <ctype.h>
#include <stdio.h>
#include <strings.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	const char *error = NULL;
	struct compcfg *list = NULL;
	if (!ready) {
		fuzz_quiet_log();
		ready = 1;
	}
	if (size > 65536)
		return 0;
	const char *text = (const char *)data;
	const char *nul = memchr(text, '\0', size);
	size_t flen = nul != NULL ? (size_t)(nul - text) : size;
	const char *secret = "s";
	if (compcfg_parse("fuzz", text, flen, &list, &error) < 0) {
		FUZZ_CHECK(error != NULL && strncmp(error, "fuzz:", 5) == 0,
			   "error \"%s\"", error ? error : "(null)");
	} else {
		for (unsigned i = 0; i < list->n; i++) {
			const struct compcfg_entry *e = &list->e[i];
			FUZZ_CHECK(strchr(e->domain, '.') != NULL &&
				   e->secret[0] != '\0', "entry %u", i);
			for (const char *p = e->secret; *p; p++)
				FUZZ_CHECK(*p > 0x20 && *p < 0x7f, "secret");
			FUZZ_CHECK(compcfg_exact(list, e->domain) == e,
				   "exact %s", e->domain);
			FUZZ_CHECK(compcfg_find(list, e->domain) == e,
				   "find %s", e->domain);
		}
		if (list->n > 0)
			secret = list->e[0].secret;
	}
	if (nul != NULL) {
		const char *rest = nul + 1;
		size_t rlen = size - flen - 1;
		const char *nl = memchr(rest, '\n', rlen);
		char id[256];
		size_t idlen = nl != NULL ? (size_t)(nl - rest) : 0;
		if (idlen < sizeof(id) && memchr(rest, '\0', idlen) == NULL) {
			memcpy(id, rest, idlen);
			id[idlen] = '\0';
			const char *t = nl != NULL ? nl + 1 : rest;
			size_t tlen = rlen - (size_t)(t - rest);
			char want[COMPCFG_DIGEST_HEX + 1], upper[64];
			compcfg_handshake_digest(id, secret, want);
			FUZZ_CHECK(compcfg_handshake_ok(id, secret, want,
							strlen(want)),
				   "own digest refused");
			snprintf(upper, sizeof(upper), " \n%s\t", want);
			for (char *p = upper; *p; p++)
				*p = (char)toupper((unsigned char)*p);
			FUZZ_CHECK(compcfg_handshake_ok(id, secret, upper,
							strlen(upper)),
				   "upper-case digest refused");
			if (compcfg_handshake_ok(id, secret, t, tlen)) {
				size_t a = 0, b = tlen;
				while (a < b && strchr(" \t\r\n", t[a]))
					a++;
				while (b > a && strchr(" \t\r\n", t[b - 1]))
					b--;
				FUZZ_CHECK(b - a == COMPCFG_DIGEST_HEX &&
					   strncasecmp(t + a, want,
						       COMPCFG_DIGEST_HEX) == 0,
					   "accepted \"%.*s\"", (int)tlen, t);
			}
		}
	}
	compcfg_free(&list);
	return 0;
}
