/*
 * caps.c - XEP-0115 entity capabilities (1.6.0) and XEP-0390 (0.3.2)
 * over parsed XML: the <c/> of a presence, the hash input of a
 * disco#info answer, its hash, the +notify node names (caps.h).  Pure:
 * no I/O, no logging, no shared state.
 * Failure policy: an ill-formed answer is -1 with a static reason; the
 * caller (caps_ext.c) logs one line and never caches it.
 */
#include "caps.h"
#include "buf.h"
#include "base64.h"
#include "xml.h"

#include "arena.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_XDATA "jabber:x:data"
#define NS_XML "http://www.w3.org/XML/1998/namespace"

static const char *const caps_algo_names[] = {
	[CAPS_SHA1] = "sha-1", [CAPS_SHA256] = "sha-256",
	[CAPS_SHA384] = "sha-384", [CAPS_SHA512] = "sha-512",
};

enum caps_algo caps_algo_parse(const char *s)
{
	if (s == NULL)
		return CAPS_ALGO_NONE;
	for (int i = CAPS_SHA1; i <= CAPS_SHA512; i++)
		if (strcmp(s, caps_algo_names[i]) == 0)
			return (enum caps_algo)i;
	return CAPS_ALGO_NONE;
}

const char *caps_algo_name(enum caps_algo algo)
{
	return algo >= CAPS_SHA1 && algo <= CAPS_SHA512 ?
	       caps_algo_names[algo] : "none";
}

/* A ver is base64 text: no quote, '#', '<' or space sneaks into the
 * query node or a log line. */
static int caps_ver_ok(const char *v, size_t len)
{
	if (len == 0 || len > CAPS_VER_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char ch = v[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '+' || ch == '/' ||
		      ch == '='))
			return 0;
	}
	return 1;
}

static int caps_parse_0115(const struct xml_node *c, struct caps_ref *r)
{
	const char *hash = xml_attr(c, "hash");
	const char *ver = xml_attr(c, "ver");
	const char *node = xml_attr(c, "node");
	enum caps_algo algo = caps_algo_parse(hash);
	if (algo == CAPS_ALGO_NONE || ver == NULL || node == NULL ||
	    !caps_ver_ok(ver, strlen(ver)) || strlen(node) > CAPS_NODE_MAX ||
	    node[0] == '\0')
		return 0;       /* legacy (no hash) or unusable: no caps */
	memset(r, 0, sizeof(*r));
	r->algo = algo;
	memcpy(r->ver, ver, strlen(ver) + 1);
	memcpy(r->node, node, strlen(node) + 1);
	return 1;
}

static int caps_parse_0390(struct arena *a, const struct xml_node *c,
			   struct caps_ref *r)
{
	for (const struct xml_node *h = xml_first_element(c); h != NULL;
	     h = xml_next_element(h)) {
		if (!xml_is(h, NS_HASHES2, "hash"))
			continue;
		enum caps_algo algo = caps_algo_parse(xml_attr(h, "algo"));
		if (algo == CAPS_ALGO_NONE)
			continue;
		char *v = xml_text(a, h);
		if (v == NULL || !caps_ver_ok(v, strlen(v)))
			continue;
		memset(r, 0, sizeof(*r));
		r->v2 = 1;
		r->algo = algo;
		memcpy(r->ver, v, strlen(v) + 1);
		return 1;
	}
	return 0;
}

int caps_parse_presence(const struct xml_node *presence, struct caps_ref *r)
{
	const struct xml_node *c = xml_child(presence, NS_CAPS, "c");
	if (c != NULL && caps_parse_0115(c, r))
		return 1;
	c = xml_child(presence, NS_ECAPS2, "c");
	if (c == NULL)
		return 0;
	struct arena a;
	arena_init(&a, 256);
	int ret = caps_parse_0390(&a, c, r);
	arena_free(&a);
	return ret;
}

int caps_query_node(const struct caps_ref *r, char *out, size_t size)
{
	int n = r->v2 ? snprintf(out, size, NS_ECAPS2 "#%s.%s",
				 caps_algo_name(r->algo), r->ver)
		      : snprintf(out, size, "%s#%s", r->node, r->ver);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

int caps_node_parse(const char *node, enum caps_algo algo, int v2,
		    struct caps_ref *r)
{
	const char *ver;
	memset(r, 0, sizeof(*r));
	if (algo < CAPS_SHA1 || algo > CAPS_SHA512)
		return -1;
	r->algo = algo;
	r->v2 = v2 != 0;
	if (r->v2) {
		const char *name = caps_algo_name(algo);
		size_t p = strlen(NS_ECAPS2 "#"), nl = strlen(name);
		if (strncmp(node, NS_ECAPS2 "#", p) != 0 ||
		    strncmp(node + p, name, nl) != 0 || node[p + nl] != '.')
			return -1;
		ver = node + p + nl + 1;
	} else {
		const char *hash = strrchr(node, '#');
		if (hash == NULL || hash == node ||
		    (size_t)(hash - node) > CAPS_NODE_MAX)
			return -1;
		memcpy(r->node, node, (size_t)(hash - node));
		ver = hash + 1;
	}
	if (!caps_ver_ok(ver, strlen(ver)))
		return -1;
	strcpy(r->ver, ver);
	return 0;
}

/* ---- sorted lists of octet strings --------------------------------- */

struct caps_str {
	char *s;
	size_t len;
};

struct caps_list {
	struct caps_str *v;
	size_t n, cap;
};

static int caps_list_add(struct caps_list *l, const struct buf *b)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct caps_str *v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	char *s = malloc(buf_used(b) + 1);
	if (s == NULL)
		return -1;
	if (buf_used(b) > 0)    /* an empty buffer may have no memory */
		memcpy(s, buf_head(b), buf_used(b));
	l->v[l->n++] = (struct caps_str){ s, buf_used(b) };
	return 0;
}

/* Entries end in their separator ('<', 0x1f, 0x1e): the order is that
 * of the strings without it (XEP-0115 section 5.1: sort, then append
 * '<'), so "urn:x" comes before "urn:x+notify" ('+' < '<'). */
static int caps_str_cmp(const void *pa, const void *pb)
{
	const struct caps_str *a = pa, *b = pb;
	size_t la = a->len > 0 ? a->len - 1 : 0, lb = b->len > 0 ? b->len - 1 : 0;
	size_t n = la < lb ? la : lb;
	int c = memcmp(a->s, b->s, n);
	if (c != 0)
		return c;
	if (la != lb)
		return la < lb ? -1 : 1;
	return a->len < b->len ? -1 : a->len > b->len;
}

/* Sort; 1 when two entries are equal (a duplicate). */
static int caps_list_sort(struct caps_list *l)
{
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), caps_str_cmp);
	for (size_t i = 1; i < l->n; i++)
		if (caps_str_cmp(&l->v[i - 1], &l->v[i]) == 0)
			return 1;
	return 0;
}

/* Append each entry, then term (if >= 0), to out. */
static int caps_list_out(const struct caps_list *l, struct buf *out, int term)
{
	for (size_t i = 0; i < l->n; i++)
		if (buf_append(out, l->v[i].s, l->v[i].len) < 0)
			return -1;
	if (term >= 0) {
		char ch = (char)term;
		return buf_append(out, &ch, 1);
	}
	return 0;
}

static void caps_list_free(struct caps_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].s);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static const char *caps_or_empty(const char *s)
{
	return s != NULL ? s : "";
}

static int caps_put(struct buf *b, const char *s, int sep)
{
	char ch = (char)sep;
	return buf_append(b, s, strlen(s)) < 0 || buf_append(b, &ch, 1) < 0 ?
	       -1 : 0;
}

/* ---- XEP-0115 section 5.1 ------------------------------------------ */

/* The values of field f, each then '<' (0115) or 0x1f (0390), sorted. */
static int caps_values(struct arena *a, const struct xml_node *f, int sep,
		       struct caps_list *vals)
{
	struct buf b;
	buf_init(&b, 0);
	for (const struct xml_node *v = xml_first_element(f); v != NULL;
	     v = xml_next_element(v)) {
		if (!xml_is(v, NS_XDATA, "value"))
			continue;
		char *t = xml_text(a, v);
		b.off = b.len = 0;
		if (t == NULL || caps_put(&b, t, sep) < 0 ||
		    caps_list_add(vals, &b) < 0) {
			buf_free(&b);
			return -1;
		}
	}
	buf_free(&b);
	caps_list_sort(vals);   /* equal values are allowed */
	return 0;
}

/* The FORM_TYPE of a 0115 form: 1 with *type_r, 0 ignored (none, or not
 * hidden: section 5.4 rule 3.4), -1 ill-formed (several values). */
static int caps_form_type(struct arena *a, const struct xml_node *x,
			  const char **type_r)
{
	for (const struct xml_node *f = xml_first_element(x); f != NULL;
	     f = xml_next_element(f)) {
		if (!xml_is(f, NS_XDATA, "field") ||
		    strcmp(caps_or_empty(xml_attr(f, "var")), "FORM_TYPE") != 0)
			continue;
		const char *type = xml_attr(f, "type");
		const char *val = NULL;
		for (const struct xml_node *v = xml_first_element(f);
		     v != NULL; v = xml_next_element(v)) {
			if (!xml_is(v, NS_XDATA, "value"))
				continue;
			char *t = xml_text(a, v);
			if (t == NULL)
				return -1;
			if (val != NULL && strcmp(val, t) != 0)
				return -1;
			val = t;
		}
		if (type == NULL || strcmp(type, "hidden") != 0 || val == NULL)
			return 0;
		*type_r = val;
		return 1;
	}
	return 0;
}

/* One 0115 form: "FORM_TYPE<" then each field "var<" values sorted by
 * var.  0, 1 ignored, -1 error. */
static int caps_form_0115(struct arena *a, const struct xml_node *x,
			  struct buf *out, const char **form_type_r,
			  const char **error_r)
{
	const char *form_type;
	int t = caps_form_type(a, x, &form_type);
	if (t < 0) {
		*error_r = "FORM_TYPE with several values";
		return -1;
	}
	if (t == 0)
		return 1;
	*form_type_r = form_type;
	struct caps_list fields = { 0 };
	struct buf b;
	buf_init(&b, 0);
	int ret = caps_put(out, form_type, '<');
	for (const struct xml_node *f = xml_first_element(x);
	     f != NULL && ret == 0; f = xml_next_element(f)) {
		const char *var = xml_attr(f, "var");
		if (!xml_is(f, NS_XDATA, "field") || var == NULL ||
		    strcmp(var, "FORM_TYPE") == 0)
			continue;
		struct caps_list vals = { 0 };
		b.off = b.len = 0;
		if (caps_put(&b, var, '<') < 0 ||
		    caps_values(a, f, '<', &vals) < 0 ||
		    caps_list_out(&vals, &b, -1) < 0 ||
		    caps_list_add(&fields, &b) < 0)
			ret = -1;
		caps_list_free(&vals);
	}
	if (ret == 0) {
		caps_list_sort(&fields);
		ret = caps_list_out(&fields, out, -1);
	}
	if (ret < 0)
		*error_r = "out of memory";
	caps_list_free(&fields);
	buf_free(&b);
	return ret;
}

/* Identities "category/type/lang/name<" or the 0390 form. */
static int caps_identity(const struct xml_node *id, int v2, struct buf *b)
{
	const char *cat = caps_or_empty(xml_attr(id, "category"));
	const char *type = caps_or_empty(xml_attr(id, "type"));
	const char *lang = caps_or_empty(xml_attr_ns(id, NS_XML, "lang"));
	const char *name = caps_or_empty(xml_attr(id, "name"));
	if (v2) {
		char rs = 0x1e;
		return caps_put(b, cat, 0x1f) < 0 || caps_put(b, type, 0x1f) < 0
		       || caps_put(b, lang, 0x1f) < 0 ||
		       caps_put(b, name, 0x1f) < 0 ||
		       buf_append(b, &rs, 1) < 0 ? -1 : 0;
	}
	return buf_appendf(b, "%s/%s/%s/%s<", cat, type, lang, name);
}

/* Identities and features of query into two sorted lists. */
static int caps_ids_features(const struct xml_node *query, int v2,
			     struct caps_list *ids, struct caps_list *feats,
			     const char **error_r)
{
	struct buf b;
	buf_init(&b, 0);
	int ret = 0;
	for (const struct xml_node *n = xml_first_element(query);
	     n != NULL && ret == 0; n = xml_next_element(n)) {
		b.off = b.len = 0;
		if (xml_is(n, NS_DISCO_INFO, "identity")) {
			if (caps_identity(n, v2, &b) < 0 ||
			    caps_list_add(ids, &b) < 0)
				ret = -1;
		} else if (xml_is(n, NS_DISCO_INFO, "feature")) {
			const char *var = xml_attr(n, "var");
			if (var == NULL) {
				*error_r = "feature without var";
				buf_free(&b);
				return -1;
			}
			if (caps_put(&b, var, v2 ? 0x1f : '<') < 0 ||
			    caps_list_add(feats, &b) < 0)
				ret = -1;
		}
	}
	buf_free(&b);
	if (ret < 0) {
		*error_r = "out of memory";
		return -1;
	}
	if (caps_list_sort(ids)) {
		*error_r = "duplicate identity";
		return -1;
	}
	if (caps_list_sort(feats)) {
		*error_r = "duplicate feature";
		return -1;
	}
	return 0;
}

static int caps_forms_0115(struct arena *a, const struct xml_node *query,
			   struct buf *out, const char **error_r)
{
	struct caps_list forms = { 0 }, types = { 0 };
	struct buf b, t;
	buf_init(&b, 0);
	buf_init(&t, 0);
	int ret = 0;
	for (const struct xml_node *x = xml_first_element(query);
	     x != NULL && ret == 0; x = xml_next_element(x)) {
		if (!xml_is(x, NS_XDATA, "x"))
			continue;
		const char *ft = NULL;
		b.off = b.len = 0;
		int r = caps_form_0115(a, x, &b, &ft, error_r);
		if (r < 0)
			ret = -1;
		else if (r == 0) {
			t.off = t.len = 0;
			if (buf_append(&t, ft, strlen(ft)) < 0 ||
			    caps_list_add(&types, &t) < 0 ||
			    caps_list_add(&forms, &b) < 0) {
				*error_r = "out of memory";
				ret = -1;
			}
		}
	}
	if (ret == 0 && caps_list_sort(&types)) {
		*error_r = "duplicate FORM_TYPE";
		ret = -1;
	}
	if (ret == 0) {
		/* "FORM_TYPE<" leads each form's text, and FORM_TYPEs are
		 * distinct: sorting the texts sorts by FORM_TYPE */
		caps_list_sort(&forms);
		if (caps_list_out(&forms, out, -1) < 0) {
			*error_r = "out of memory";
			ret = -1;
		}
	}
	caps_list_free(&forms);
	caps_list_free(&types);
	buf_free(&b);
	buf_free(&t);
	return ret;
}

/* ---- XEP-0390 section 4.1 ------------------------------------------ */

static int caps_forms_0390(struct arena *a, const struct xml_node *query,
			   struct buf *out, const char **error_r)
{
	struct caps_list forms = { 0 };
	struct buf fb, b;
	buf_init(&fb, 0);
	buf_init(&b, 0);
	int ret = 0;
	for (const struct xml_node *x = xml_first_element(query);
	     x != NULL && ret == 0; x = xml_next_element(x)) {
		if (!xml_is(x, NS_XDATA, "x"))
			continue;
		struct caps_list fields = { 0 };
		for (const struct xml_node *f = xml_first_element(x);
		     f != NULL && ret == 0; f = xml_next_element(f)) {
			if (!xml_is(f, NS_XDATA, "field"))
				continue;
			const char *var = xml_attr(f, "var");
			if (var == NULL) {
				*error_r = "field without var";
				ret = -1;
				break;
			}
			struct caps_list vals = { 0 };
			b.off = b.len = 0;
			if (caps_put(&b, var, 0x1f) < 0 ||
			    caps_values(a, f, 0x1f, &vals) < 0 ||
			    caps_list_out(&vals, &b, 0x1e) < 0 ||
			    caps_list_add(&fields, &b) < 0)
				ret = -1;
			caps_list_free(&vals);
		}
		fb.off = fb.len = 0;
		if (ret == 0) {
			caps_list_sort(&fields);
			if (caps_list_out(&fields, &fb, 0x1d) < 0 ||
			    caps_list_add(&forms, &fb) < 0)
				ret = -1;
		}
		caps_list_free(&fields);
	}
	if (ret == 0) {
		caps_list_sort(&forms);
		ret = caps_list_out(&forms, out, 0x1c);
	}
	if (ret < 0 && *error_r == NULL)
		*error_r = "out of memory";
	caps_list_free(&forms);
	buf_free(&fb);
	buf_free(&b);
	return ret;
}

int caps_input(const struct xml_node *query, int v2, struct buf *out,
	       const char **error_r)
{
	struct caps_list ids = { 0 }, feats = { 0 };
	struct arena a;
	*error_r = NULL;
	if (!xml_is(query, NS_DISCO_INFO, "query")) {
		*error_r = "not a disco#info query";
		return -1;
	}
	if (buf_reserve(out, 1) < 0) {   /* an empty input still has data */
		*error_r = "out of memory";
		return -1;
	}
	arena_init(&a, 1024);
	int ret = caps_ids_features(query, v2, &ids, &feats, error_r);
	if (ret == 0 && !v2) {
		if (caps_list_out(&ids, out, -1) < 0 ||
		    caps_list_out(&feats, out, -1) < 0)
			ret = -1;
		else
			ret = caps_forms_0115(&a, query, out, error_r);
	} else if (ret == 0) {
		if (caps_list_out(&feats, out, 0x1c) < 0 ||
		    caps_list_out(&ids, out, 0x1c) < 0)
			ret = -1;
		else
			ret = caps_forms_0390(&a, query, out, error_r);
	}
	if (ret < 0 && *error_r == NULL)
		*error_r = "out of memory";
	caps_list_free(&ids);
	caps_list_free(&feats);
	arena_free(&a);
	return ret;
}

int caps_hash_b64(enum caps_algo algo, const void *data, size_t len,
		  char *b64, size_t size)
{
	const EVP_MD *md = algo == CAPS_SHA1 ? EVP_sha1() :
			   algo == CAPS_SHA256 ? EVP_sha256() :
			   algo == CAPS_SHA384 ? EVP_sha384() :
			   algo == CAPS_SHA512 ? EVP_sha512() : NULL;
	unsigned char dig[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	if (md == NULL || EVP_Digest(data, len, dig, &dlen, md, NULL) != 1)
		return -1;
	return base64_encode(dig, dlen, b64, size);
}

int caps_verify(const struct xml_node *query, const struct caps_ref *r,
		const char **error_r)
{
	struct buf in;
	char b64[BASE64_ENCODED_LEN(EVP_MAX_MD_SIZE) + 1];
	buf_init(&in, 0);
	int ret = caps_input(query, r->v2, &in, error_r);
	if (ret == 0) {
		if (caps_hash_b64(r->algo, buf_head(&in), buf_used(&in), b64,
				  sizeof(b64)) < 0) {
			*error_r = "unknown hash";
			ret = -1;
		} else {
			ret = strcmp(b64, r->ver) == 0;
		}
	}
	buf_free(&in);
	return ret;
}

unsigned caps_notify_names(const struct xml_node *query, const char **names,
			   size_t *lens, unsigned max, int *more_r)
{
	static const char suffix[] = "+notify";
	const size_t sl = sizeof(suffix) - 1;
	unsigned n = 0;
	*more_r = 0;
	for (const struct xml_node *f = xml_first_element(query); f != NULL;
	     f = xml_next_element(f)) {
		const char *var = xml_attr(f, "var");
		size_t len = var != NULL ? strlen(var) : 0;
		if (!xml_is(f, NS_DISCO_INFO, "feature") || len <= sl ||
		    memcmp(var + len - sl, suffix, sl) != 0)
			continue;
		if (n == max) {
			*more_r = 1;
			break;
		}
		names[n] = var;
		lens[n++] = len - sl;
	}
	return n;
}
