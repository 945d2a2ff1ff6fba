/*
 * main.js: the entry module of the character page: the shared chat (chat.js) with the
 * character app's features plugged into its hooks (hooks.js):
 *   character/characters.js  the character library as the picker's personas, the user persona
 *   character/library.js     the library dialog: import (drop or pick a card), Chat, Edit,
 *                            Duplicate, Export, Delete; the user persona form
 *   character/editor.js      the character editor dialog
 *   character/lore.js        the "Lore" row under a reply: the lorebook entries that fired
 *   character/groups.js      group chats: the New group dialog, the members bar, a round of replies
 * The office page loads office/main.js instead and none of these.
 */
import { chatStart } from './chat.js';
import { personasList } from './character/characters.js';
import { libraryBind, libraryEscape } from './character/library.js';
import { loreBelow, loreStored } from './character/lore.js';
import { groupShown, groupSubmit, groupsBind } from './character/groups.js';

chatStart({
  personasList,
  bind() {
    libraryBind();
    groupsBind();
  },
  conversationShown: groupShown,
  submitText: groupSubmit,
  replyBelow: loreBelow,
  replyStored: loreStored,
  escape: libraryEscape,
});
