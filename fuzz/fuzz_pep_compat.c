/*
 * fuzz_pep_compat.c - the XEP-0402 compat and XEP-0398 forms
 * (worker/pep_compat_form.c) as worker/pep_compat.c runs them on what a
 * client sends: a XEP-0048 <storage/> (private XML set, #compat-pep
 * publish), a XEP-0402 <conference/> item, an avatar <metadata/>, a
 * vCard.  Limit: 16 bookmarks.  Properties:
 *  - no memory error or undefined behaviour (ASan, UBSan);
 *  - a <storage/> is accepted or refused with a reason; accepted: at most
 *    16 bookmarks, each room a bare JID with a localpart, no room twice;
 *  - each accepted bookmark rendered as XEP-0402 is well-formed, parses
 *    back to a <conference/> of urn:xmpp:bookmarks:1 that reads to the
 *    same bookmark (name, autojoin, nick, password), and rendered as
 *    XEP-0048 inside <storage/> parses back to the same bookmark too;
 *  - a <metadata/> pick is a 40-digit lower-case hex id, or none, or a
 *    refusal with a reason;
 *  - the SHA-1 of any text is 40 lower-case hex digits or a refusal;
 *  - the XEP-0398 conversion of any stored vCard (the input) writes a
 *    well-formed vCard that keeps its other elements, with one PHOTO
 *    whose hash is the data's, and none after a removal.
 * Input: one XML element (in jabber:client when unqualified).
 */
#include "fuzz.h"
#include "xmlinput.h"
#include "arena.h"
#include "buf.h"
#include "../worker/pep_compat_form.h"
#include "../worker/xml.h"

#include <string.h>

/* unqualified = no namespace, as PEP_NO_NS (worker/pep.h) */
#define FUZZ_NO_NS ""

static void fuzz_hex(const char *h)
{
	FUZZ_CHECK(strlen(h) == 40 && strspn(h, "0123456789abcdef") == 40,
		   "hex '%s'", h);
}

static void fuzz_same(const struct pep_compat_bm *x,
		      const struct pep_compat_bm *y)
{
	FUZZ_CHECK(pep_compat_form_bm_eq(x, y), "bookmark %s changed", x->jid);
}

static void fuzz_bookmark(struct arena *a, const struct pep_compat_bm *b)
{
	struct buf out;
	const char *error;
	buf_init(&out, 0);
	FUZZ_CHECK(pep_compat_form_render_0402(&out, b) == 0, "0402 render");
	struct xml_node *n = xml_parse_in(a, buf_head(&out), buf_used(&out) - 1,
					  FUZZ_NO_NS, &error);
	FUZZ_CHECK(n != NULL && xml_is(n, NS_BOOKMARKS2, "conference"),
		   "0402 form not well-formed: %s", buf_head(&out));
	struct pep_compat_bm back = { 0 };
	back.jid = b->jid;
	pep_compat_form_bm_of(a, n, NS_BOOKMARKS2, &back);
	fuzz_same(b, &back);
	buf_consume(&out, buf_used(&out));
	buf_appendf(&out, "<storage xmlns='" NS_BOOKMARKS_LEGACY "'>");
	pep_compat_form_render_0048(&out, b);
	buf_appendf(&out, "</storage>");
	n = xml_parse(a, buf_head(&out), buf_used(&out), &error);
	FUZZ_CHECK(n != NULL, "0048 form not well-formed");
	struct pep_compat_bm *bm;
	unsigned nb;
	const char *why;
	FUZZ_CHECK(pep_compat_form_storage(a, n, 16, &bm, &nb, &why) == 0 &&
		   nb == 1 && strcmp(bm[0].jid, b->jid) == 0,
		   "0048 form of %s does not read back", b->jid);
	fuzz_same(b, &bm[0]);
	buf_free(&out);
}

/* Elements of v other than PHOTO (in vcard-temp). */
static unsigned fuzz_vcard_others(const struct xml_node *v, unsigned *photos)
{
	unsigned n = 0;
	*photos = 0;
	for (const struct xml_node *c = xml_first_element(v); c != NULL;
	     c = xml_next_element(c)) {
		if (xml_is(c, NS_VCARD, "PHOTO"))
			(*photos)++;
		else
			n++;
	}
	return n;
}

/* XEP-0398 conversion with v as the stored vCard (changed in place):
 * the vCard written is well-formed, keeps v's other elements, has one
 * PHOTO whose hash is the data's (none after a removal). */
static void fuzz_vcard_photo(struct arena *a, struct xml_node *v)
{
	static const char pix[] = "iVBORw0KGgoAAAANSUhEUg==";
	char want[41], hex[41];
	unsigned photos, others = 0;
	const char *error;
	int is_vcard = v != NULL && xml_is(v, NS_VCARD, "vCard");
	if (is_vcard)
		others = fuzz_vcard_others(v, &photos);
	FUZZ_CHECK(pep_compat_form_sha1(pix, want) == 0, "sha1 of the seed");
	for (int remove = 0; remove < 2; remove++) {
		struct buf out;
		buf_init(&out, 0);
		FUZZ_CHECK(pep_compat_form_vcard_photo(a, v, "image/png",
						       remove ? NULL : pix,
						       &out) == 0,
			   "vCard not written");
		struct xml_node *w = xml_parse(a, buf_head(&out),
					       buf_used(&out) - 1, &error);
		FUZZ_CHECK(w != NULL && xml_is(w, NS_VCARD, "vCard"),
			   "vCard written not well-formed: %s", buf_head(&out));
		FUZZ_CHECK(fuzz_vcard_others(w, &photos) == others,
			   "vCard lost elements: %s", buf_head(&out));
		FUZZ_CHECK(photos == (remove ? 0u : 1u), "%u PHOTOs", photos);
		pep_compat_form_vcard_hash(a, w, hex);
		FUZZ_CHECK(strcmp(hex, remove ? "" : want) == 0,
			   "PHOTO hash '%s'", hex);
		buf_free(&out);
		v = w;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arena *a;
	const char *why = NULL, *type = NULL;
	char hex[41];

	struct xml_node *n = fuzz_xml_input(&a, data, size);
	if (n != NULL) {
		struct pep_compat_bm *bm;
		unsigned nb;
		if (pep_compat_form_storage(a, n, 16, &bm, &nb, &why) < 0)
			FUZZ_CHECK(why != NULL, "refused without a reason");
		else {
			FUZZ_CHECK(nb <= 16, "%u bookmarks", nb);
			for (unsigned i = 0; i < nb; i++) {
				FUZZ_CHECK(strchr(bm[i].jid, '@') != NULL &&
					   strchr(bm[i].jid, '/') == NULL,
					   "room '%s'", bm[i].jid);
				for (unsigned k = 0; k < i; k++)
					FUZZ_CHECK(strcmp(bm[i].jid,
							  bm[k].jid) != 0,
						   "room twice");
				fuzz_bookmark(a, &bm[i]);
			}
		}
		if (xml_is(n, NS_BOOKMARKS2, "conference")) {
			struct pep_compat_bm b = { 0 };
			b.jid = "room@conference.localhost";
			pep_compat_form_bm_of(a, n, NS_BOOKMARKS2, &b);
			fuzz_bookmark(a, &b);
		}
		int k = pep_compat_form_metadata(n, hex, &type, &why);
		FUZZ_CHECK(k >= -1 && k <= 1, "metadata verdict %d", k);
		if (k < 0)
			FUZZ_CHECK(why != NULL, "metadata refused without reason");
		else if (k == 0 && hex[0] != '\0')
			fuzz_hex(hex);
		pep_compat_form_vcard_hash(a, n, hex);
		if (hex[0] != '\0')
			fuzz_hex(hex);
		const char *t = xml_text(a, n);
		if (t != NULL && pep_compat_form_sha1(t, hex) == 0)
			fuzz_hex(hex);
		fuzz_vcard_photo(a, n);        /* last: changes n */
	}
	arena_reset(a);
	return 0;
}
