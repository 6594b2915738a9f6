/*
 * pep_compat_form.c - the pure parts of worker/pep_compat.c (XEP-0402
 * compat, XEP-0398), without sockets or the database, so that
 * fuzz/fuzz_pep_compat.c can run them: the two bookmark forms (XEP-0048
 * <storage/> in, XEP-0402 <conference/> out and back), the avatar
 * metadata pick and the SHA-1 of base64 image data.
 * Failure policy: every function returns an error (or an empty result)
 * for input it cannot use; nothing is logged here, the caller logs.
 */
#include "pep_compat_form.h"
#include "arena.h"
#include "base64.h"
#include "buf.h"
#include "jid.h"
#include "xml.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int pep_compat_form_true(const char *v)
{
	return v != NULL && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

static const char *pep_compat_form_child_text(struct arena *a,
				     const struct xml_node *n,
				     const char *ns, const char *name)
{
	const struct xml_node *c = xml_child(n, ns, name);
	return c != NULL ? xml_text(a, c) : NULL;
}

/* A <conference/> of either namespace into b (jid given separately for
 * XEP-0402, where it is the item id). */
void pep_compat_form_bm_of(struct arena *a, const struct xml_node *conf,
			 const char *ns, struct pep_compat_bm *b)
{
	b->name = xml_attr(conf, "name");
	b->autojoin = pep_compat_form_true(xml_attr(conf, "autojoin"));
	b->nick = pep_compat_form_child_text(a, conf, ns, "nick");
	b->password = pep_compat_form_child_text(a, conf, ns, "password");
	b->extensions = strcmp(ns, NS_BOOKMARKS2) == 0 ?
			xml_child(conf, ns, "extensions") : NULL;
}

static int pep_compat_form_str_eq(const char *x, const char *y)
{
	return strcmp(x != NULL ? x : "", y != NULL ? y : "") == 0;
}

/* Same bookmark, as far as the legacy form can tell. */
int pep_compat_form_bm_eq(const struct pep_compat_bm *x, const struct pep_compat_bm *y)
{
	return pep_compat_form_str_eq(x->name, y->name) && x->autojoin == y->autojoin &&
	       pep_compat_form_str_eq(x->nick, y->nick) &&
	       pep_compat_form_str_eq(x->password, y->password);
}

static void pep_compat_form_attr(struct buf *out, const char *name, const char *v)
{
	buf_appendf(out, " %s='", name);
	xml_escape(out, v, strlen(v), 1);
	buf_append(out, "'", 1);
}

static void pep_compat_form_elem(struct buf *out, const char *name, const char *v)
{
	if (v == NULL)
		return;
	buf_appendf(out, "<%s>", name);
	xml_escape(out, v, strlen(v), 0);
	buf_appendf(out, "</%s>", name);
}

/* The XEP-0402 payload of b (as pep.c stores payloads: PEP_NO_NS). */
int pep_compat_form_render_0402(struct buf *out, const struct pep_compat_bm *b)
{
	buf_appendf(out, "<conference xmlns='" NS_BOOKMARKS2 "'");
	if (b->name != NULL)
		pep_compat_form_attr(out, "name", b->name);
	if (b->autojoin)
		buf_appendf(out, " autojoin='true'");
	buf_appendf(out, ">");
	pep_compat_form_elem(out, "nick", b->nick);
	pep_compat_form_elem(out, "password", b->password);
	if (b->extensions != NULL &&
	    xml_serialize(out, b->extensions, NS_BOOKMARKS2) < 0)
		return -1;
	buf_appendf(out, "</conference>");
	return buf_append(out, "", 1);
}

/* <conference/> of XEP-0048 (inside <storage xmlns='storage:bookmarks'>). */
void pep_compat_form_render_0048(struct buf *out, const struct pep_compat_bm *b)
{
	buf_appendf(out, "<conference");
	pep_compat_form_attr(out, "jid", b->jid);
	buf_appendf(out, " autojoin='%s'", b->autojoin ? "true" : "false");
	if (b->name != NULL)
		pep_compat_form_attr(out, "name", b->name);
	if (b->nick == NULL && b->password == NULL) {
		buf_appendf(out, "/>");
		return;
	}
	buf_appendf(out, ">");
	pep_compat_form_elem(out, "nick", b->nick);
	pep_compat_form_elem(out, "password", b->password);
	buf_appendf(out, "</conference>");
}

/* The legacy <storage/> (XEP-0048): its conferences, at most max of
 * them, into *bm_r (in a's memory) and *n_r.  A room named twice keeps
 * the later one; <url/> bookmarks have no XEP-0402 form and are
 * skipped.  0, or -1 with *why_r (static text). */
int pep_compat_form_storage(struct arena *a, const struct xml_node *storage,
			    unsigned max, struct pep_compat_bm **bm_r,
			    unsigned *n_r, const char **why_r)
{
	unsigned n = 0;
	for (const struct xml_node *e = xml_first_element(storage); e;
	     e = xml_next_element(e))
		n += xml_is(e, NS_BOOKMARKS_LEGACY, "conference");
	if (n > max) {
		*why_r = "more bookmarks than pep.max_items";
		return -1;
	}
	struct pep_compat_bm *bm = arena_zalloc(a, (n ? n : 1) * sizeof(*bm));
	if (bm == NULL) {
		*why_r = "out of memory";
		return -1;
	}
	unsigned got = 0;
	for (const struct xml_node *e = xml_first_element(storage); e;
	     e = xml_next_element(e)) {
		if (!xml_is(e, NS_BOOKMARKS_LEGACY, "conference"))
			continue;
		const char *s = xml_attr(e, "jid"), *err = NULL;
		struct jid j;
		if (s == NULL || jid_parse(a, s, &j, &err) < 0 ||
		    j.resource != NULL || j.local == NULL) {
			*why_r = "a conference without a room JID";
			return -1;
		}
		struct pep_compat_bm b = { 0 };
		b.jid = jid_bare(a, &j);
		if (b.jid == NULL) {
			*why_r = "out of memory";
			return -1;
		}
		pep_compat_form_bm_of(a, e, NS_BOOKMARKS_LEGACY, &b);
		unsigned k = 0;
		while (k < got && strcmp(bm[k].jid, b.jid) != 0)
			k++;
		bm[k] = b;
		if (k == got)
			got++;
	}
	*bm_r = bm;
	*n_r = got;
	return 0;
}

/* The <info/> of a urn:xmpp:avatar:metadata payload m to copy (XEP-0398
 * section 3.1: the one without url): 0 with its id (40 lower-case hex
 * digits) in id and its type (or NULL) in *type_r; 0 with id "" for an
 * empty <metadata/> (no avatar); 1 when every <info/> points elsewhere
 * (nothing to copy); -1 with *why_r when it is not metadata or the id
 * is not a SHA-1. */
int pep_compat_form_metadata(const struct xml_node *m, char id[41],
			     const char **type_r, const char **why_r)
{
	const struct xml_node *info = NULL;
	int any = 0;
	id[0] = '\0';
	*type_r = NULL;
	if (m == NULL || !xml_is(m, NS_AVATAR_META, "metadata")) {
		*why_r = "not <metadata/>";
		return -1;
	}
	for (const struct xml_node *i = xml_first_element(m); i != NULL;
	     i = xml_next_element(i)) {
		if (!xml_is(i, NS_AVATAR_META, "info"))
			continue;
		any = 1;
		if (xml_attr(i, "url") == NULL && info == NULL)
			info = i;
	}
	if (!any)
		return 0;
	if (info == NULL)
		return 1;
	const char *s = xml_attr(info, "id");
	if (s == NULL || strlen(s) != 40 ||
	    strspn(s, "0123456789abcdefABCDEF") != 40) {
		*why_r = "info id is not a SHA-1";
		return -1;
	}
	for (size_t k = 0; k < 40; k++)
		id[k] = (char)(s[k] >= 'A' && s[k] <= 'F' ?
			       s[k] - 'A' + 'a' : s[k]);
	id[40] = '\0';
	*type_r = xml_attr(info, "type");
	return 0;
}

/* SHA-1 (lower-case hex) of the image in base64 text b64 (whitespace
 * skipped, as XEP-0084 payloads and vCard BINVALs may wrap).  0, or -1
 * when it is not base64 or memory ran out. */
int pep_compat_form_sha1(const char *b64, char hex[41])
{
	size_t n = strlen(b64), k = 0, bin_len = 0;
	char *clean = malloc(n + 1);
	unsigned char *bin = malloc(BASE64_DECODED_MAX(n) + 1);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned md_len = 0;
	int ret = -1;
	if (clean == NULL || bin == NULL)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (b64[i] != ' ' && b64[i] != '\t' && b64[i] != '\r' &&
		    b64[i] != '\n')
			clean[k++] = b64[i];
	if (k == 0 || base64_decode(clean, k, bin, BASE64_DECODED_MAX(n) + 1,
				    &bin_len) < 0 ||
	    EVP_Digest(bin, bin_len, md, &md_len, EVP_sha1(), NULL) != 1 ||
	    md_len != 20)
		goto out;
	for (unsigned i = 0; i < 20; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	ret = 0;
out:
	free(clean);
	free(bin);
	return ret;
}

/* The hash of vCard v's PHOTO into hex ("" when it has none or it is
 * not readable). */
void pep_compat_form_vcard_hash(struct arena *a, const struct xml_node *v,
			    char hex[41])
{
	hex[0] = '\0';
	const struct xml_node *photo = v != NULL ?
		xml_child(v, NS_VCARD, "PHOTO") : NULL;
	const struct xml_node *bin = photo != NULL ?
		xml_child(photo, NS_VCARD, "BINVAL") : NULL;
	const char *t = bin != NULL ? xml_text(a, bin) : NULL;
	if (t != NULL && pep_compat_form_sha1(t, hex) < 0)
		hex[0] = '\0';
}

int pep_compat_form_vcard_photo(struct arena *a, struct xml_node *v,
				const char *type, const char *data,
				struct buf *out)
{
	if (v == NULL || !xml_is(v, NS_VCARD, "vCard"))
		v = xml_new(a, NS_VCARD, "vCard");
	if (v == NULL)
		return -1;
	for (struct xml_node *prev = NULL, *n = v->children, *next; n != NULL;
	     n = next) {
		next = n->next;
		if (xml_is(n, NS_VCARD, "PHOTO"))
			xml_unlink_child(v, prev, n);
		else
			prev = n;
	}
	if (data != NULL) {
		struct xml_node *photo = xml_add_child(a, v, NS_VCARD, "PHOTO");
		struct xml_node *t = type != NULL && photo != NULL ?
			xml_add_child(a, photo, NS_VCARD, "TYPE") : NULL;
		struct xml_node *b = photo != NULL ?
			xml_add_child(a, photo, NS_VCARD, "BINVAL") : NULL;
		if (b == NULL || (type != NULL && (t == NULL ||
		    xml_add_text(a, t, type, strlen(type)) < 0)) ||
		    xml_add_text(a, b, data, strlen(data)) < 0)
			return -1;
	}
	return xml_serialize(out, v, "jabber:client") < 0 ||
	       buf_append(out, "", 1) < 0 ? -1 : 0;
}
