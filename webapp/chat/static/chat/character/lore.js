/*
 * character/lore.js: the "Lore" row under a character's reply: which lorebook entries
 * fired for it (name, tokens, why; those left out for lack of room marked "dropped") and
 * where the prompt's tokens went. Collapsed by default. The store keeps both with the reply
 * (meta.lore, meta.prompt.budget); the done frame does not carry them, so a live reply gets
 * its row once it is read back (hooks.replyStored).
 */
import { messageData } from '../state.js';
import { node } from '../dom.js';
import { belowRefresh } from '../thread.js';

const BUDGET_PARTS = [
  ['character', 'character'],
  ['lore', 'lore'],
  ['examples', 'examples'],
  ['history', 'history'],
  ['reply', 'reply'],
];

function tokens(n) {
  return `${n} token${n === 1 ? '' : 's'}`;
}

function entryItem(entry) {
  const li = node('li', 'lore-entry');
  li.dataset.testid = 'lore-entry';
  const name = String(entry.name || '') || (entry.uid !== undefined ? `Entry ${entry.uid}` : 'Entry');
  li.append(node('span', 'lore-name', name));
  if (Number.isFinite(entry.tokens)) li.append(node('span', 'lore-tokens', tokens(entry.tokens)));
  if (entry.reason) li.append(node('span', 'lore-reason', String(entry.reason)));
  if (entry.book) li.title = `From the lorebook “${entry.book}”`;
  if (entry.dropped) {
    li.dataset.dropped = 'true';
    const badge = node('span', 'badge badge-dropped', 'dropped');
    badge.title = 'It fired, but the context had no room left for it';
    li.append(badge);
  }
  return li;
}

function budgetLine(prompt) {
  const budget = prompt.budget;
  const parts = BUDGET_PARTS.filter(([key]) => Number.isFinite(budget[key])).map(
    ([key, label]) => `${label} ${budget[key]}`,
  );
  const notes = [];
  if (prompt.examples_dropped) notes.push('example dialogue left out');
  if (Number(prompt.history_dropped) > 0) notes.push(`${prompt.history_dropped} older message(s) left out`);
  const line = node('p', 'lore-budget', `Tokens: ${parts.join(' · ')}${notes.length ? ` (${notes.join('; ')})` : ''}`);
  line.dataset.testid = 'lore-budget';
  return line;
}

/** hooks.replyBelow: the collapsed Lore row of a finished reply, or null without lore or budget. */
export function loreBelow(meta) {
  const lore = Array.isArray(meta.lore) ? meta.lore.filter((x) => x && typeof x === 'object') : [];
  const prompt = meta.prompt && typeof meta.prompt === 'object' ? meta.prompt : {};
  const hasBudget = prompt.budget && typeof prompt.budget === 'object';
  if (!lore.length && !hasBudget) return null;
  const details = node('details', 'lore-trace');
  details.dataset.testid = 'lore-trace';
  const summary = node('summary', 'lore-summary');
  const fired = lore.filter((e) => !e.dropped);
  const used = fired.reduce((sum, e) => sum + (Number.isFinite(e.tokens) ? e.tokens : 0), 0);
  let about = lore.length ? `${fired.length} entr${fired.length === 1 ? 'y' : 'ies'} · ${tokens(used)}` : 'none fired';
  if (lore.length > fired.length) about += ` · ${lore.length - fired.length} dropped`;
  summary.append(node('span', 'lore-label', 'Lore'), node('span', 'lore-about', about));
  details.append(summary);
  if (lore.length) {
    const list = node('ul', 'lore-list');
    list.append(...lore.map(entryItem));
    details.append(list);
  } else {
    details.append(node('p', 'lore-none', 'No lorebook entry fired for this reply.'));
  }
  if (hasBudget) details.append(budgetLine(prompt));
  return details;
}

/** hooks.replyStored: the stored reply's lore and budget, shown under the live reply. */
export function loreStored(article, message) {
  const stored = (message && message.meta) || {};
  if (!stored.lore && !stored.prompt) return;
  const data = messageData.get(article);
  data.meta = Object.assign({}, data.meta, { lore: stored.lore, prompt: stored.prompt });
  belowRefresh(article);
}
