/*
 * search.js: the sidebar's search over the user's own chats (GET /search). While a query
 * is on, its hits stand in for the chat list; a hit opens its chat at the message. The
 * server matches by morphemes (Korean) and words (English); the terms it searched for
 * come back and are marked in each hit's text.
 */
import { api, apiMessage } from './api.js';
import { $, els, node } from './dom.js';
import { openConversation, relativeTime } from './conversations.js';
import { personaName } from './state.js';

const form = $('chat-search');
const input = $('chat-search-input');
const results = $('search-results');
const status = $('search-status');
const TYPING_PAUSE_MS = 350;

let asked = 0; // the newest query's number: an older answer arriving late is dropped
let timer = null;

/** `text` as nodes, with every case-insensitive occurrence of a term in <mark>. */
function marked(text, terms) {
  const wanted = terms.filter(Boolean).map((t) => t.toLowerCase());
  const out = [];
  const lower = text.toLowerCase();
  let at = 0;
  while (at < text.length) {
    let next = -1;
    let size = 0;
    for (const term of wanted) {
      const i = lower.indexOf(term, at);
      if (i >= 0 && (next < 0 || i < next)) {
        next = i;
        size = term.length;
      }
    }
    if (next < 0) break;
    if (next > at) out.push(document.createTextNode(text.slice(at, next)));
    out.push(node('mark', null, text.slice(next, next + size)));
    at = next + size;
  }
  if (at < text.length) out.push(document.createTextNode(text.slice(at)));
  return out;
}

function statusSay(text) {
  status.textContent = text;
  status.hidden = !text;
}

function listShow(searching) {
  results.hidden = !searching;
  els.convList.hidden = searching;
  if (searching) els.convEmpty.hidden = true;
  else els.convEmpty.hidden = els.convList.children.length > 0;
}

function hitItem(hit, terms) {
  const li = node('li', 'search-hit');
  li.dataset.testid = 'search-hit';
  li.dataset.dbId = hit.db_id;
  li.dataset.messageId = hit.message_id;
  const open = node('button');
  open.type = 'button';
  const title = hit.title || 'Untitled chat';
  open.setAttribute('aria-label', `Open “${title}” at this message`);
  const head = node('span', 'search-hit-title', title);
  const meta = node('span', 'conversation-meta', `${relativeTime(hit.created_at)} · ${personaName(hit.persona)}`);
  const text = node('span', 'search-hit-snippet');
  text.dataset.testid = 'search-snippet';
  text.append(...marked(hit.snippet, terms));
  open.append(head, text, meta);
  open.addEventListener('click', () => {
    const conversation = { db_id: hit.db_id, title: hit.title, persona: hit.persona, greeting: 0 };
    openConversation(hit.db_id, { messageId: hit.message_id, seq: hit.seq, conversation });
  });
  li.append(open);
  return li;
}

async function searchRun() {
  const q = input.value.trim();
  const mine = ++asked;
  if (!q) {
    results.replaceChildren();
    statusSay('');
    listShow(false);
    return;
  }
  statusSay('Searching…');
  let data;
  try {
    data = await api(`/search?q=${encodeURIComponent(q)}&limit=50`);
  } catch (err) {
    if (mine !== asked) return;
    results.replaceChildren();
    listShow(true);
    statusSay(apiMessage(err));
    return;
  }
  if (mine !== asked) return;
  const hits = data.results || [];
  results.replaceChildren(...hits.map((hit) => hitItem(hit, data.terms || [])));
  listShow(true);
  let said = hits.length ? `${hits.length}${hits.length === 50 ? '+' : ''} found` : 'Nothing found';
  if (data.pending) said += ` (still indexing ${data.pending} message${data.pending === 1 ? '' : 's'})`;
  statusSay(said);
}

/** Bind the search box: results as the user pauses typing, at once on Enter; Escape clears. */
export function searchBind() {
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    clearTimeout(timer);
    searchRun();
  });
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(searchRun, TYPING_PAUSE_MS);
  });
  input.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || event.isComposing || !input.value) return;
    event.preventDefault();
    event.stopPropagation();
    input.value = '';
    searchRun();
  });
}
