/*
 * muc_form.c - a room's configuration (XEP-0045 section 10.2): the
 * defaults of a new room under the service's settings, and copies.
 * Failure policy: out of memory is -1 to the caller, which answers
 * <resource-constraint/>; nothing here logs or sends.
 */
#include "muc.h"

#include "config.h"

#include <stdlib.h>
#include <string.h>

void muc_config_free(struct muc_config *cf)
{
	free(cf->name);
	free(cf->description);
	free(cf->lang);
	free(cf->password);
	memset(cf, 0, sizeof(*cf));
}

int muc_config_default(struct muc_config *cf, const struct config *cfg)
{
	(void)cfg;
	memset(cf, 0, sizeof(*cf));
	/* Prosody's and ejabberd's defaults for a new room: temporary,
	 * public, open, unmoderated, semi-anonymous, archived */
	cf->public_list = 1;
	cf->change_subject = 0;
	cf->allow_invites = 0;
	cf->logging = 1;
	cf->members_by_default = 1;
	cf->presence_broadcast = MUC_ROLES_ALL;
	cf->get_member_list = MUC_ROLES_PARTICIPANT | MUC_ROLES_MODERATOR;
	cf->allow_pm = MUC_PM_ANYONE;
	cf->name = strdup("");
	cf->description = strdup("");
	cf->lang = strdup("");
	cf->password = strdup("");
	if (cf->name == NULL || cf->description == NULL || cf->lang == NULL ||
	    cf->password == NULL) {
		muc_config_free(cf);
		return -1;
	}
	return 0;
}

static int muc_dup(char **dst, const char *src)
{
	*dst = strdup(src != NULL ? src : "");
	return *dst == NULL ? -1 : 0;
}

int muc_config_copy(struct muc_config *dst, const struct muc_config *src)
{
	struct muc_config t = *src;
	t.name = t.description = t.lang = t.password = NULL;
	if (muc_dup(&t.name, src->name) < 0 ||
	    muc_dup(&t.description, src->description) < 0 ||
	    muc_dup(&t.lang, src->lang) < 0 ||
	    muc_dup(&t.password, src->password) < 0) {
		muc_config_free(&t);
		return -1;
	}
	muc_config_free(dst);
	*dst = t;
	return 0;
}
