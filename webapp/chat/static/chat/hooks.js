/*
 * hooks.js: where an app adds features to the shared chat. Each page's entry module
 * (main.js: character/, office/main.js: office/) passes its own to chatStart, which puts
 * them here before anything runs; these defaults are the plain chat. So the character
 * page loads no office code, and the office page no character code.
 */
export const hooks = {
  /** The personas for the picker, given GET /personas' list (character: the whole library). */
  async personasList(personas) {
    return personas;
  },
  /** Binds the app's own events (after the shared ones). */
  bind() {},
  /** Runs once personas and chats are loaded, before the first chat opens. */
  start() {},
  /** A chat is on screen: a new one, or a stored one just opened (state.group: a group chat). */
  conversationShown() {},
  /**
   * The composer's text, on every composer update: true when it is a command run here
   * (no length limit, no socket needed). May update the hint line under the composer.
   */
  composerTyped(value) {
    return false;
  },
  /** Enter or Send: the text to send to the model, or null when it was handled here. */
  submitText(text) {
    return text;
  },
  /** Fields added to a message frame (the options of the next message), or null. */
  messageOptions() {
    return null;
  },
  /** A frame of a type the shared code does not handle. */
  frame(frame) {},
  /** A reply's text before it is rendered: nodes shown above its Markdown, and the rest. */
  replyLead(text) {
    return { lead: [], rest: text };
  },
  /** A reply is finishing (done, error, stop, or shown from the store). */
  replyFinish(article) {},
  /** A node shown between a finished reply's text and its footer, or null. */
  replyBelow(meta) {
    return null;
  },
  /** A finished live reply, once read back from the store (its stored `meta` in full). */
  replyStored(article, message) {},
  /** Stop was pressed while this reply streams. */
  replyStopping(article) {},
  /** Escape was pressed: true when it closed something of the app's own. */
  escape() {
    return false;
  },
};
