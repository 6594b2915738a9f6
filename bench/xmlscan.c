/*
 * xmlscan.c - just enough XML for a load client: split the server's
 * stream into its header, top-level elements and closing tag, and pick
 * attributes and child text out of an element.  It trusts the server to
 * send well-formed XML (it is the thing under test, not an adversary):
 * no entity decoding, no namespace processing.  Quotes inside tags are
 * honoured, so '>' in an attribute value does not end the tag.
 * Failure policy: XS_ERROR for what cannot be a stream; the caller closes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* memmem */
#endif
#include "bench.h"

#include <string.h>

/* Index of the '>' ending the tag at p[i] ('<'), or 0 when incomplete. */
static size_t xs_tag_end(const char *p, size_t n, size_t i)
{
	char quote = 0;
	for (size_t j = i + 1; j < n; j++) {
		char c = p[j];
		if (quote != 0) {
			if (c == quote)
				quote = 0;
		} else if (c == '\'' || c == '"') {
			quote = c;
		} else if (c == '>') {
			return j;
		}
	}
	return 0;
}

/* Past a <?..?>, <!--..-->, <![CDATA[..]]> or <!..> at p[i]; 0 if
 * incomplete. */
static size_t xs_skip_special(const char *p, size_t n, size_t i)
{
	const char *end;
	const char *close = "?>";
	if (p[i + 1] == '!') {
		if (n - i >= 4 && memcmp(p + i, "<!--", 4) == 0)
			close = "-->";
		else if (n - i >= 9 && memcmp(p + i, "<![CDATA[", 9) == 0)
			close = "]]>";
		else if (n - i < 9)
			return 0;
		else
			close = ">";
	}
	end = memmem(p + i + 2, n - i - 2, close, strlen(close));
	return end == NULL ? 0 : (size_t)(end - p) + strlen(close);
}

bool xmlscan_is(const char *el, size_t len, const char *name)
{
	size_t nl = strlen(name);
	if (len < nl + 2 || el[0] != '<' || memcmp(el + 1, name, nl) != 0)
		return false;
	char c = el[nl + 1];
	return c == ' ' || c == '>' || c == '/' || c == '\t' || c == '\n' ||
	       c == '\r';
}

enum xs_kind xmlscan_next(const char *p, size_t n, bool open,
			  struct xs_item *it)
{
	size_t i = 0, start = 0, depth = 0;
	bool in_el = false;
	while (i < n) {
		if (p[i] != '<') {
			const char *lt = memchr(p + i, '<', n - i);
			if (lt == NULL)
				return XS_MORE;
			i = (size_t)(lt - p);
			continue;
		}
		if (i + 1 >= n)
			return XS_MORE;
		if (p[i + 1] == '?' || p[i + 1] == '!') {
			size_t e = xs_skip_special(p, n, i);
			if (e == 0)
				return XS_MORE;
			i = e;
			continue;
		}
		size_t j = xs_tag_end(p, n, i);
		if (j == 0)
			return XS_MORE;
		bool end_tag = p[i + 1] == '/', empty = p[j - 1] == '/';
		if (!open) {
			if (end_tag || empty ||
			    !xmlscan_is(p + i, j + 1 - i, "stream:stream"))
				return XS_ERROR;
			*it = (struct xs_item){ i, j + 1 - i, j + 1 - i, j + 1 };
			return XS_OPEN;
		}
		if (!in_el) {
			if (end_tag) {
				*it = (struct xs_item){ i, j + 1 - i, j + 1 - i,
							j + 1 };
				return XS_CLOSE;
			}
			in_el = true;
			start = i;
			it->tag_len = j + 1 - i;
			depth = empty ? 0 : 1;
		} else if (end_tag) {
			depth--;
		} else if (!empty) {
			depth++;
		}
		i = j + 1;
		if (in_el && depth == 0) {
			it->start = start;
			it->len = i - start;
			it->consumed = i;
			return XS_ELEMENT;
		}
	}
	return XS_MORE;
}

int xmlscan_attr(const char *tag, size_t tag_len, const char *name,
		 char *out, size_t outsize)
{
	size_t nl = strlen(name);
	const char *p = tag, *end = tag + tag_len;
	while ((p = memmem(p, (size_t)(end - p), name, nl)) != NULL) {
		const char *v = p + nl;
		if (p > tag && (p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n') &&
		    end - v >= 2 && v[0] == '=' && (v[1] == '\'' || v[1] == '"')) {
			const char *q = memchr(v + 2, v[1], (size_t)(end - v - 2));
			if (q == NULL || (size_t)(q - v - 2) >= outsize)
				return -1;
			memcpy(out, v + 2, (size_t)(q - v - 2));
			out[q - v - 2] = '\0';
			return (int)(q - v - 2);
		}
		p += nl;
	}
	return -1;
}

const char *xmlscan_text(const char *el, size_t len, const char *name,
			       size_t *text_len_r)
{
	char open[64], close[64];
	int ol = snprintf(open, sizeof(open), "<%s", name);
	int cl = snprintf(close, sizeof(close), "</%s>", name);
	const char *p = el, *end = el + len;
	while ((p = memmem(p, (size_t)(end - p), open, (size_t)ol)) != NULL) {
		if (!xmlscan_is(p, (size_t)(end - p), name)) {
			p += ol;
			continue;
		}
		size_t j = xs_tag_end(p, (size_t)(end - p), 0);
		if (j == 0 || p[j - 1] == '/')
			return NULL;
		const char *text = p + j + 1;
		const char *e = memmem(text, (size_t)(end - text), close,
				       (size_t)cl);
		if (e == NULL)
			return NULL;
		*text_len_r = (size_t)(e - text);
		return text;
	}
	return NULL;
}
