/*
 * markdown.js: Markdown and code highlighting in the chat, on two vendored libraries
 * (vendor/README.md): markdown-it parses, highlight.js colours code blocks.
 *
 * Safe by construction. markdown-it runs with html: false and only its TOKENS are used
 * (md.parse, never md.render): this module turns them into DOM nodes itself, with
 * createElement and text nodes, from a fixed set of tags. No text from the model, a user
 * or a persona ever reaches innerHTML, so "<script>" or "<img onerror=…>" in a reply can
 * only ever show up as literal text. The one innerHTML is highlight.js's output inside a
 * code block (highlight below): hljs escapes the code and adds only its own
 * <span class="tok-…">, and anything else in it makes the block fall back to plain text.
 * Links keep only http:, https: and mailto: addresses (safeHref, checked by markdown-it's
 * validateLink, so a refused link stays visible as the text that was written, and again
 * when the <a> is made); images are never loaded: they become links.
 *
 * Streaming: markdown-it reads half-written input sensibly (an unclosed ``` fence runs
 * to the end, a dangling "**" stays literal), and a whole reply is cheap enough to
 * render again every frame.
 *
 * Exports (also window.PersonaMarkdown, for tests and the console):
 *   render(text)               → DocumentFragment
 *   highlight(code, language)  → DocumentFragment (<span class="tok-…"> runs)
 *   safeHref(url)              → the trimmed URL when it is an allowed absolute one, else null
 *   copyText(text)             → Promise<boolean> (clipboard, with a fallback for
 *                                plain-http pages where navigator.clipboard is absent)
 */
import MarkdownIt from './vendor/markdown-it-15.0.3/markdown-it.esm.min.mjs';
import hljs from './vendor/highlight.js-11.12.0/highlight.min.js';

// ---------------------------------------------------------------------------
// DOM helpers: the only way this file makes nodes.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

// ---------------------------------------------------------------------------
// Links

const ALLOWED_PROTOCOLS = new Set(['http:', 'https:', 'mailto:']);

export function safeHref(raw) {
  if (typeof raw !== 'string') return null;
  const href = raw.trim();
  // Control characters and spaces inside an address are refused outright, so
  // tricks like "java\tscript:" never get as far as URL parsing.
  if (!href || /[\u0000-\u0020\u007f]/.test(href)) return null;
  if (!/^(https?:\/\/|mailto:)/i.test(href)) return null;
  let url;
  try {
    url = new URL(href);
  } catch (_) {
    return null;
  }
  if (!ALLOWED_PROTOCOLS.has(url.protocol)) return null;
  if (url.protocol !== 'mailto:' && !url.hostname) return null;
  // The address as written (it parsed as an absolute http(s)/mailto URL above), so
  // a link reads the way the model wrote it.
  return href;
}

function linkEl(href, title) {
  const a = el('a', 'md-link');
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer nofollow';
  if (title) a.title = title;
  return a;
}

function imageIcon() {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'md-image-icon');
  for (const d of ['M4 5h16v14H4z', 'M4 16l5-5 4 4 3-3 4 4', 'M15 9h.01']) {
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}

export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch (_) {
    // fall through to the textarea fallback
  }
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.top = '0';
  area.style.left = '0';
  area.style.opacity = '0';
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch (_) {
    ok = false;
  }
  area.remove();
  return ok;
}

// ---------------------------------------------------------------------------
// The parser

// maxNesting: a wall of ">" or list markers nests at most this deep (markdown-it drops
// what lies deeper; its default, 100, indents text off the screen).
const md = new MarkdownIt('default', { html: false, linkify: true, typographer: false, maxNesting: 20 });
// Bare addresses become links only when written with their scheme (https://…, mailto:…),
// not "example.com" or "a@b.c", which are as often file names or prose.
md.linkify.set({ fuzzyLink: false, fuzzyEmail: false });
// markdown-it makes no link, image or autolink whose address this refuses; the text stays
// as written. (It is given the normalized address, percent-encoded.)
md.validateLink = (url) => safeHref(url) !== null;

// ---------------------------------------------------------------------------
// Code highlighting: highlight.js's "common" build (about 40 languages), its classes
// prefixed "tok-" (chat.css colours them). Names it does not know as aliases:
const LANGUAGE_ALIASES = {
  python3: 'python',
  py3: 'python',
  node: 'javascript',
  shell: 'bash', // hljs's "shell" is a console session with prompts; a ```shell block is a script
  htm: 'xml',
  vue: 'xml',
  postgres: 'sql',
  postgresql: 'sql',
  mysql: 'sql',
  sqlite: 'sql',
  plsql: 'sql',
};

hljs.configure({ classPrefix: 'tok-' });

/** hljs's output is nothing but <span class="…"> and escaped text: anything else is refused. */
function onlyTokenSpans(fragment) {
  for (const node of fragment.querySelectorAll('*')) {
    if (node.tagName !== 'SPAN') return false;
    for (const attribute of node.attributes) {
      if (attribute.name !== 'class') return false;
    }
  }
  return true;
}

export function highlight(code, language) {
  const fragment = document.createDocumentFragment();
  const name = String(language || '').toLowerCase();
  const lang = LANGUAGE_ALIASES[name] || name;
  if (lang && hljs.getLanguage(lang)) {
    // The one innerHTML of the UI: highlight.js escapes the code it is given (& < > " ')
    // and wraps runs of it in spans; a <template> parses it inert.
    const template = document.createElement('template');
    template.innerHTML = hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
    if (onlyTokenSpans(template.content) && template.content.textContent === code) {
      fragment.append(template.content);
      return fragment;
    }
  }
  fragment.append(document.createTextNode(code));
  return fragment;
}

function codeBlock(code, info) {
  const first = String(info || '').trim().split(/\s+/)[0];
  const lang = first.toLowerCase().replace(/[^a-z0-9+#._-]/g, '').slice(0, 32);
  const wrap = el('div', 'md-code');
  if (lang) wrap.dataset.lang = lang;
  const head = el('div', 'md-code-head');
  head.append(el('span', 'md-code-lang', lang || 'text'));
  const copy = el('button', 'md-code-copy', 'Copy');
  copy.type = 'button';
  copy.setAttribute('aria-label', 'Copy code' + (lang ? ' (' + lang + ')' : ''));
  head.append(copy);
  const pre = el('pre');
  const codeEl = el('code', lang ? 'language-' + lang : '');
  // A fence's content ends with the newline before its closing ```; one still streaming does not.
  codeEl.append(highlight(code.replace(/\n$/, ''), lang));
  pre.append(codeEl);
  copy.addEventListener('click', async () => {
    const ok = await copyText(codeEl.textContent);
    copy.textContent = ok ? 'Copied' : 'Copy failed';
    copy.classList.toggle('is-done', ok);
    setTimeout(() => {
      copy.textContent = 'Copy';
      copy.classList.remove('is-done');
    }, 1500);
  });
  wrap.append(head, pre);
  return wrap;
}

// ---------------------------------------------------------------------------
// Tokens → DOM. Block tokens are a flat list with open/close pairs (nesting 1 / -1), and
// an "inline" token holds the inline tokens of one paragraph, heading or cell as its
// children, in the same shape: both are built with a stack of open elements.

const BLOCK_TAGS = new Set([
  'p', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'blockquote', 'ul', 'ol', 'li',
  'table', 'thead', 'tbody', 'tr', 'th', 'td',
]);
const INLINE_TAGS = { strong_open: 'strong', em_open: 'em', s_open: 'del' };
const TASK = /^\[([ xX])\][ \t]+/;
const ALIGNMENTS = new Set(['left', 'right', 'center']);

/** The element an opening block token makes; the element its children go into is the same. */
function blockOpen(token, next) {
  const tag = BLOCK_TAGS.has(token.tag) ? token.tag : 'div';
  if (/^h[1-6]$/.test(tag)) return el(tag, 'md-heading');
  const node = el(tag);
  if (tag === 'ol') {
    const start = token.attrGet('start'); // set by markdown-it only when the list does not start at 1
    if (start !== null && Number.isInteger(Number(start))) node.start = Number(start);
  } else if (tag === 'th' || tag === 'td') {
    const align = /text-align:\s*(\w+)/.exec(token.attrGet('style') || '');
    if (align && ALIGNMENTS.has(align[1])) node.style.textAlign = align[1];
  } else if (tag === 'li' && next) {
    // "- [ ] todo" / "- [x] done": a task; the box is drawn, not the brackets.
    const first = next.children && next.children[0];
    const task = first && first.type === 'text' ? TASK.exec(first.content) : null;
    if (task) {
      first.content = first.content.slice(task[0].length);
      node.className = 'md-task';
      node.append(el('span', 'md-task-box', task[1] === ' ' ? '☐ ' : '☑ '));
    }
  }
  return node;
}

function blocksAppend(tokens, root) {
  const stack = [root];
  for (let i = 0; i < tokens.length; i += 1) {
    const token = tokens[i];
    const parent = stack[stack.length - 1];
    if (token.type === 'inline') {
      inlineAppend(token.children || [], parent);
    } else if (token.type === 'fence' || token.type === 'code_block') {
      parent.append(codeBlock(token.content, token.type === 'fence' ? token.info : ''));
    } else if (token.type === 'hr') {
      parent.append(el('hr'));
    } else if (token.hidden) {
      // The <p> of a tight list item: its text sits in the <li> itself.
    } else if (token.nesting === 1) {
      if (token.type === 'table_open') {
        const wrap = el('div', 'md-table-wrap');
        const table = el('table');
        wrap.append(table);
        parent.append(wrap);
        stack.push(table);
        continue;
      }
      // For a list item: the inline token of its first paragraph, to spot a task box.
      const first = token.type === 'list_item_open' && tokens[i + 1] && tokens[i + 1].type === 'paragraph_open';
      const next = first && tokens[i + 2] && tokens[i + 2].type === 'inline' ? tokens[i + 2] : null;
      const node = blockOpen(token, next);
      parent.append(node);
      stack.push(node);
    } else if (token.nesting === -1) {
      if (stack.length > 1) stack.pop();
    } else if (token.content) {
      // Anything else (html_block cannot occur with html: false) shows as its text.
      parent.append(document.createTextNode(token.content));
    }
  }
}

function inlineAppend(tokens, root) {
  const stack = [root];
  for (const token of tokens) {
    const parent = stack[stack.length - 1];
    switch (token.type) {
      case 'text':
      case 'text_special':
        if (token.content) parent.append(document.createTextNode(token.content));
        break;
      case 'softbreak':
      case 'hardbreak':
        // A chat reply's line breaks are meant: every newline is a <br>.
        parent.append(el('br'));
        break;
      case 'code_inline':
        parent.append(el('code', 'md-inline-code', token.content));
        break;
      case 'link_open': {
        const href = safeHref(token.attrGet('href'));
        if (href) {
          const a = linkEl(href, token.attrGet('title'));
          parent.append(a);
          stack.push(a);
        } else {
          stack.push(parent); // (validateLink let nothing else through) the label stays text
        }
        break;
      }
      case 'image': {
        // Images are never loaded: they show as a link to the picture.
        const href = safeHref(token.attrGet('src'));
        if (href) {
          const a = linkEl(href, token.attrGet('title'));
          a.classList.add('md-image-link');
          a.append(imageIcon(), document.createTextNode(token.content.trim() || 'image'));
          parent.append(a);
        } else if (token.content) {
          parent.append(document.createTextNode(token.content));
        }
        break;
      }
      case 'link_close': {
        const a = stack.length > 1 ? stack.pop() : null;
        if (a && a.tagName === 'A' && !a.firstChild) a.textContent = a.getAttribute('href');
        break;
      }
      default:
        if (INLINE_TAGS[token.type]) {
          const node = el(INLINE_TAGS[token.type]);
          parent.append(node);
          stack.push(node);
        } else if (token.nesting === -1) {
          if (stack.length > 1) stack.pop();
        } else if (token.content) {
          parent.append(document.createTextNode(token.content));
        }
    }
  }
}

export function render(text) {
  const fragment = document.createDocumentFragment();
  const source = String(text === undefined || text === null ? '' : text);
  blocksAppend(md.parse(source, {}), fragment);
  return fragment;
}

window.PersonaMarkdown = Object.freeze({ render, highlight, safeHref, copyText });
