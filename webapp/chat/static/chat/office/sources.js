/*
 * office/sources.js: what a grounded reply shows besides its text: the "Sources" row
 * under it (documents and web pages, each a chip that opens its excerpt), and the notice
 * that opens a reply whose web search could not run.
 */
import { icon, node } from '../dom.js';
import { safeHref } from '../markdown.js';
import { nearBottom, scrollToBottom } from '../thread.js';

let sourcesSeq = 0;

/** A web source's link, when its address is a plain http(s) one. */
function sourceHref(source) {
  const href = source.url ? safeHref(String(source.url)) : null;
  return href && /^https?:/i.test(href) ? href : null;
}

/** What follows the title: a document's heading, or a web page's host. */
function sourceDetail(source) {
  if (source.heading) return String(source.heading);
  const href = sourceHref(source);
  return href ? new URL(href).hostname : '';
}

function sourceTitle(source) {
  return source.title || (source.kind === 'web' ? 'Web page' : 'Untitled document');
}

function sourceLabel(source) {
  const title = sourceTitle(source);
  const detail = sourceDetail(source);
  return detail ? `${title} — ${detail}` : title;
}

/**
 * The "Sources" row: one chip per source ("[n] Title — heading", or the host of a web
 * source); a chip toggles its excerpt below the row (one open at a time). Text only; a
 * web source's address becomes a link only when it is http(s).
 */
function sourcesBuild(sources) {
  sourcesSeq += 1;
  const wrap = node('div', 'sources');
  wrap.dataset.testid = 'sources';
  const row = node('div', 'sources-row');
  const label = node('span', 'sources-label', 'Sources');
  label.id = `sources-label-${sourcesSeq}`;
  const chips = node('div', 'sources-chips');
  chips.setAttribute('role', 'group');
  chips.setAttribute('aria-labelledby', label.id);
  row.append(label, chips);
  const panel = node('div', 'source-excerpt');
  panel.id = `source-excerpt-${sourcesSeq}`;
  panel.dataset.testid = 'source-excerpt';
  panel.hidden = true;
  const buttons = [];
  sources.forEach((source, index) => {
    const n = Number.isFinite(Number(source.n)) ? Number(source.n) : index + 1;
    const chip = node('button', 'source-chip');
    chip.type = 'button';
    chip.dataset.testid = 'source-chip';
    chip.dataset.n = String(n);
    chip.dataset.kind = source.kind === 'web' ? 'web' : 'document';
    if (source.document_id) chip.dataset.documentId = String(source.document_id);
    chip.setAttribute('aria-expanded', 'false');
    chip.setAttribute('aria-controls', panel.id);
    chip.title = `[${n}] ${sourceLabel(source)} — show the passage`;
    chip.append(node('span', 'source-n', `[${n}]`), document.createTextNode(' '));
    chip.append(node('span', 'source-title', sourceTitle(source)));
    const detail = sourceDetail(source);
    if (detail) chip.append(node('span', 'source-heading', ` — ${detail}`));
    chip.addEventListener('click', () => {
      const open = chip.getAttribute('aria-expanded') === 'true';
      for (const b of buttons) b.setAttribute('aria-expanded', 'false');
      if (open) {
        panel.hidden = true;
        panel.replaceChildren();
        return;
      }
      chip.setAttribute('aria-expanded', 'true');
      const head = node('div', 'source-excerpt-head', `[${n}] ${sourceLabel(source)}`);
      const text = node('p', 'source-excerpt-text', source.excerpt || '(no excerpt stored)');
      panel.replaceChildren(head, text);
      const href = sourceHref(source);
      if (href) {
        const link = node('a', 'source-link', href);
        link.href = href;
        link.target = '_blank';
        link.rel = 'noopener noreferrer nofollow';
        panel.append(link);
      }
      panel.dataset.n = String(n);
      panel.hidden = false;
      if (nearBottom()) scrollToBottom();
    });
    buttons.push(chip);
    chips.append(chip);
  });
  wrap.append(row, panel);
  return wrap;
}

const WEB_NOTICE = 'Web search was not used:';

/** The notice that opens a reply whose web search could not run: a note, not part of the answer. */
function noticeBuild(text) {
  const notice = node('div', 'reply-notice');
  notice.dataset.testid = 'reply-notice';
  notice.setAttribute('role', 'note');
  const reason = text.slice(WEB_NOTICE.length).trim();
  const words = node('span', 'reply-notice-text');
  words.append(node('strong', null, WEB_NOTICE), document.createTextNode(reason ? ` ${reason}` : ''));
  notice.append(icon('info'), words);
  return notice;
}

/** The Sources row of a finished reply (meta.sources), or null when it has none. */
export function sourcesBelow(meta) {
  const sources = Array.isArray(meta.sources) ? meta.sources.filter((x) => x && typeof x === 'object') : [];
  return sources.length ? sourcesBuild(sources) : null;
}

/**
 * "Web search was not used: <reason>" opens a stored reply, then a blank line and the
 * answer: the first part becomes a notice above the answer's Markdown.
 */
export function noticeSplit(text) {
  if (!text.startsWith(WEB_NOTICE)) return { lead: [], rest: text };
  const end = text.indexOf('\n\n');
  return { lead: [noticeBuild(end < 0 ? text : text.slice(0, end))], rest: end < 0 ? '' : text.slice(end + 2) };
}
