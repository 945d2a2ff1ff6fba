/*
 * office/main.js: the entry module of the office page: the shared chat (../chat.js) with
 * the office's features plugged into its hooks (../hooks.js):
 *   documents.js   the documents panel (upload with progress, drag-and-drop, status, delete)
 *   sources.js     the "Sources" row under a grounded reply, and the web-search notice
 *   slash.js       slash commands (/calc, /search, …) → tool calls, as cards (cards.js)
 *   options.js     the composer's Web and Tools options for the next message
 *   tool-steps.js  the model's tool calls in a reply, with Approve / Deny
 * The character page loads ../main.js instead and none of these.
 */
import { chatStart } from '../chat.js';
import { documentsBind, documentsLoad } from './documents.js';
import { optionsBind, optionsFrameFields, toolOptionsLoad, toolsMenuEscape } from './options.js';
import { slashSubmit, slashTyped } from './slash.js';
import { noticeSplit, sourcesBelow } from './sources.js';
import { onToolCall, toolStepsFinish, toolStepsStopping } from './tool-steps.js';

chatStart({
  bind() {
    documentsBind();
    optionsBind();
  },
  start() {
    documentsLoad();
    toolOptionsLoad();
  },
  composerTyped: slashTyped,
  submitText: slashSubmit,
  messageOptions: optionsFrameFields,
  frame(frame) {
    if (frame.type === 'tool_call') onToolCall(frame);
  },
  replyLead: noticeSplit,
  replyFinish: toolStepsFinish,
  replyBelow: sourcesBelow,
  replyStopping: toolStepsStopping,
  escape: toolsMenuEscape,
});
