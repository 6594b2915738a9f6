/*
 * fuzz_muc_config.c - a room's configuration (worker/muc_form.c) as it
 * comes back from the muc_rooms.config column and as an owner submits
 * it: muc_config_from_text() on the input's bytes, then, when the input
 * is an XML element, muc_config_submit() of it onto that room.  Limits:
 * muc.max_occupants 75 (not a step of the maxusers list),
 * muc.max_subject_bytes 64.  Properties:
 *  - no memory error or undefined behaviour (ASan, UBSan), no leak;
 *  - any bytes load (0): max_users <= 75, allow_pm and role sets within
 *    their enums, the secret present exactly when the room is
 *    password-protected; its stored text loads back to the same text;
 *  - the form and the disco#info of every room loaded or submitted are
 *    well-formed XML (strings that reach them are UTF-8, escaped);
 *  - a submission is applied (0), a cancel (1, only for type='cancel')
 *    or refused (-1) with bad-request, not-acceptable or
 *    resource-constraint and a text; on 1 and -1 the room is unchanged;
 *  - an applied one keeps the rules: max_users <= 75, the secret present
 *    exactly when protected, a lang of letters, digits and '-' of at
 *    most 35; the form of the result, submitted back to it, is accepted
 *    and changes nothing.
 * Input: any bytes (stored text); those that parse as one XML element
 * (unqualified: jabber:client) are also a submitted <x/>.
 */
#include "fuzz.h"
#include "xmlinput.h"
#include "arena.h"
#include "buf.h"
#include "config.h"
#include "../worker/muc.h"
#include "../worker/xml.h"

#include <string.h>

static struct config *fuzz_cfg;

static void fuzz_setup(void)
{
	const char *error;
	fuzz_cfg = config_new();
	FUZZ_CHECK(fuzz_cfg != NULL, "config_new");
	FUZZ_CHECK(config_set(fuzz_cfg, "muc.max_occupants=75", &error) == 0 &&
		   config_set(fuzz_cfg, "muc.max_subject_bytes=64",
			      &error) == 0, "config_set: %s", error);
}

/* cf's stored text, NUL-terminated, in out (reset first). */
static const char *fuzz_text(const struct muc_config *cf, struct buf *out)
{
	buf_consume(out, buf_used(out));
	FUZZ_CHECK(muc_config_to_text(cf, out) == 0, "to_text");
	FUZZ_CHECK(buf_append(out, "", 1) == 0, "NUL");
	return buf_head(out);
}

static void fuzz_rules(const struct muc_config *cf)
{
	FUZZ_CHECK(cf->max_users <= 75, "max_users %u", cf->max_users);
	FUZZ_CHECK(cf->allow_pm <= MUC_PM_NONE, "allow_pm %d", cf->allow_pm);
	FUZZ_CHECK((cf->presence_broadcast & ~MUC_ROLES_ALL) == 0 &&
		   (cf->get_member_list & ~MUC_ROLES_ALL) == 0, "roles");
	FUZZ_CHECK(cf->password_protected == (cf->password[0] != '\0'),
		   "protected %d with secret '%s'", cf->password_protected,
		   cf->password);
	size_t n = strlen(cf->lang);
	FUZZ_CHECK(n <= 35 && strspn(cf->lang, "abcdefghijklmnopqrstuvwxyz"
				     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
		   == n, "lang '%s'", cf->lang);
}

/* The form and disco#info of cf are well-formed; the form is returned
 * (parsed) for a submission back. */
static struct xml_node *fuzz_render(struct arena *a,
				    const struct muc_config *cf)
{
	struct buf b;
	const char *error;
	buf_init(&b, 0);
	muc_config_form(cf, fuzz_cfg, &b);
	struct xml_node *x = xml_parse(a, buf_head(&b), buf_used(&b), &error);
	FUZZ_CHECK(x != NULL, "form not well-formed (%s): %.*s", error,
		   (int)buf_used(&b), buf_head(&b));
	buf_consume(&b, buf_used(&b));
	buf_appendf(&b, "<query xmlns='http://jabber.org/protocol/disco#info'>");
	muc_config_disco_info(cf, "room", "a <subject> & more", 3, &b);
	buf_appendf(&b, "</query>");
	FUZZ_CHECK(xml_parse(a, buf_head(&b), buf_used(&b), &error) != NULL,
		   "disco#info not well-formed (%s): %.*s", error,
		   (int)buf_used(&b), buf_head(&b));
	buf_free(&b);
	return x;
}

/* The form of cf submitted back to cf: accepted, nothing changes. */
static void fuzz_form_back(struct arena *a, struct muc_config *cf,
			   struct buf *t1, struct buf *t2)
{
	const char *cond, *text;
	struct xml_node *x = fuzz_render(a, cf);
	FUZZ_CHECK(xml_set_attr(a, x, "type", "submit") == 0, "set type");
	const char *before = fuzz_text(cf, t1);
	FUZZ_CHECK(muc_config_submit(cf, x, fuzz_cfg, &cond, &text) == 0,
		   "own form refused: %s: %s", cond, text);
	FUZZ_CHECK(strcmp(fuzz_text(cf, t2), before) == 0,
		   "own form changed the room:\n%s\nto\n%s", before,
		   buf_head(t2));
}

static void fuzz_submit(struct arena *a, struct muc_config *cf,
			const struct xml_node *x, struct buf *t1,
			struct buf *t2)
{
	const char *cond = NULL, *text = NULL;
	const char *before = fuzz_text(cf, t1);
	int r = muc_config_submit(cf, x, fuzz_cfg, &cond, &text);
	if (r != 0) {
		FUZZ_CHECK(strcmp(fuzz_text(cf, t2), before) == 0,
			   "refused or cancelled (%d), yet changed", r);
	}
	if (r == 1) {
		const char *type = xml_attr(x, "type");
		FUZZ_CHECK(type != NULL && strcmp(type, "cancel") == 0,
			   "1 for a form that is no cancel");
		return;
	}
	if (r == -1) {
		FUZZ_CHECK(cond != NULL && (strcmp(cond, "bad-request") == 0 ||
					    strcmp(cond, "not-acceptable") == 0 ||
					    strcmp(cond, "resource-constraint")
					    == 0), "condition %s",
			   cond != NULL ? cond : "(none)");
		FUZZ_CHECK(text != NULL && text[0] != '\0', "no text");
		return;
	}
	FUZZ_CHECK(r == 0, "returned %d", r);
	fuzz_rules(cf);
	fuzz_form_back(a, cf, t1, t2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arena *a;
	struct muc_config cf = { 0 }, again = { 0 };
	struct buf t1, t2;
	/* parse first: it sets up the quiet log and the arena */
	struct xml_node *x = fuzz_xml_input(&a, data, size);
	if (fuzz_cfg == NULL)
		fuzz_setup();
	buf_init(&t1, 0);
	buf_init(&t2, 0);
	/* loaded into a room that has a configuration, as muc.c does:
	 * LeakSanitizer sees one not freed */
	FUZZ_CHECK(muc_config_default(&cf, fuzz_cfg) == 0, "defaults");
	FUZZ_CHECK(muc_config_from_text(&cf, fuzz_cfg, (const char *)data,
					size) == 0, "from_text");
	fuzz_rules(&cf);
	const char *t = fuzz_text(&cf, &t1);
	FUZZ_CHECK(muc_config_from_text(&again, fuzz_cfg, t, strlen(t)) == 0,
		   "from_text of to_text");
	FUZZ_CHECK(strcmp(fuzz_text(&again, &t2), t) == 0,
		   "stored text changed on a reload:\n%s\nto\n%s", t,
		   buf_head(&t2));
	muc_config_free(&again);
	fuzz_form_back(a, &cf, &t1, &t2);
	if (x != NULL)
		fuzz_submit(a, &cf, x, &t1, &t2);
	muc_config_free(&cf);
	buf_free(&t1);
	buf_free(&t2);
	arena_reset(a);
	return 0;
}
