/*
 * office/options.js: the composer's options for the next message, remembered in this
 * browser: Web (google_access) and Tools (off | auto | always, and which tools are
 * offered). Also the tool catalog (GET /tools), which /help shares.
 */
import { $, icon, node } from '../dom.js';
import { api, apiMessage } from '../api.js';

const els = {
  webToggle: $('web-toggle'),
  webState: $('web-state'),
  toolsButton: $('tools-button'),
  toolsState: $('tools-state'),
  toolsMenu: $('tools-menu'),
  toolsList: $('tools-list'),
  toolsAll: $('tools-all'),
  toolsModeAbout: $('tools-mode-about'),
};

let toolsCache = null;

export async function toolsGet() {
  if (toolsCache) return toolsCache;
  const data = await api('/tools');
  toolsCache = new Map(((data && data.tools) || []).map((t) => [t.name, t]));
  return toolsCache;
}

const OPTIONS_KEY = 'personachat.office.options';

const TOOL_MODES = {
  off: { label: 'off', about: 'The model answers without calling tools.' },
  auto: { label: 'auto', about: 'The model may call one of the offered tools before it answers.' },
  required: { label: 'always', about: 'The model must call one of the offered tools before it answers.' },
};

const options = {
  web: false,
  tools: 'off', // a key of TOOL_MODES
  toolNames: null, // the tools offered; null: all of them
  known: null, // name -> tool spec, once GET /tools answered
  note: '', // says why a change was refused (the last offered tool can't be unticked)
};

function optionsLoad() {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(OPTIONS_KEY) || 'null');
  } catch (_) {
    saved = null;
  }
  if (!saved || typeof saved !== 'object') return;
  options.web = saved.web === true;
  options.tools = Object.prototype.hasOwnProperty.call(TOOL_MODES, saved.tools) ? saved.tools : 'off';
  const names = Array.isArray(saved.tool_names) ? saved.tool_names.filter((n) => typeof n === 'string') : [];
  options.toolNames = names.length ? names.slice(0, 16) : null;
}

function optionsSave() {
  const saved = { web: options.web, tools: options.tools, tool_names: options.toolNames };
  try {
    localStorage.setItem(OPTIONS_KEY, JSON.stringify(saved));
  } catch (_) {
    // storage blocked: the choice lasts as long as the page
  }
}

/** The offered tools to send as tool_names, or null to offer all (the server's default). */
function toolNamesSent() {
  if (!options.toolNames) return null;
  if (!options.known) return options.toolNames;
  const names = options.toolNames.filter((n) => options.known.has(n));
  return names.length && names.length < options.known.size ? names : null;
}

/** The fields the options add to a message frame. */
export function optionsFrameFields() {
  const fields = {};
  if (options.web) fields.google_access = true;
  if (options.tools !== 'off') {
    fields.tools = options.tools;
    const names = toolNamesSent();
    if (names) fields.tool_names = names.slice();
  }
  return fields;
}

function optionsRender() {
  els.webToggle.setAttribute('aria-pressed', String(options.web));
  els.webState.textContent = options.web ? 'on' : 'off';
  els.webToggle.title = options.web ? 'Web search is on: answers also use web results' : 'Also search the web for the answer';
  const mode = TOOL_MODES[options.tools];
  const names = toolNamesSent();
  const total = options.known ? options.known.size : null;
  let shown = mode.label;
  let spoken = `Tools: ${mode.label}`;
  if (names && options.tools !== 'off') {
    shown += total ? ` · ${names.length}/${total}` : ` · ${names.length}`;
    spoken += total ? `, ${names.length} of ${total} tools offered` : `, ${names.length} tools offered`;
  }
  els.toolsState.textContent = shown;
  els.toolsButton.dataset.mode = options.tools;
  els.toolsButton.setAttribute('aria-label', spoken);
  for (const radio of els.toolsMenu.querySelectorAll('input[name="tools-mode"]')) {
    radio.checked = radio.value === options.tools;
  }
  els.toolsModeAbout.textContent = options.note || mode.about;
  els.toolsModeAbout.classList.toggle('is-note', Boolean(options.note));
  for (const box of els.toolsList.querySelectorAll('input[type="checkbox"]')) {
    box.checked = !names || names.includes(box.value);
  }
  els.toolsAll.hidden = !names;
  els.toolsMenu.classList.toggle('is-off', options.tools === 'off');
}

/** Fills the menu's list of tools from GET /tools (shared with the slash commands' help). */
export async function toolOptionsLoad() {
  let tools;
  try {
    tools = await toolsGet();
  } catch (err) {
    els.toolsList.replaceChildren(node('li', 'tools-list-note', `The tools could not be listed (${apiMessage(err)}).`));
    return;
  }
  options.known = tools;
  if (options.toolNames) {
    const names = options.toolNames.filter((n) => tools.has(n));
    options.toolNames = names.length && names.length < tools.size ? names : null;
  }
  const items = [];
  for (const tool of tools.values()) {
    const li = node('li');
    const label = node('label', 'tool-option');
    label.title = tool.description || tool.name;
    const box = node('input');
    box.type = 'checkbox';
    box.value = tool.name;
    box.dataset.testid = 'tool-option';
    label.append(box, node('code', 'tool-option-name', tool.name));
    if (tool.needs_approval) {
      const asks = node('span', 'tool-option-asks');
      asks.title = 'Asks for your approval before it runs';
      asks.append(icon('shield'), node('span', 'visually-hidden', ' (asks for your approval)'));
      label.append(asks);
    }
    li.append(label);
    items.push(li);
  }
  els.toolsList.replaceChildren(...items);
  optionsRender();
}

function toolsMenuOpen() {
  els.toolsMenu.hidden = false;
  els.toolsButton.setAttribute('aria-expanded', 'true');
  const checked = els.toolsMenu.querySelector('input[name="tools-mode"]:checked');
  if (checked) checked.focus();
}

function toolsMenuClose(focusButton) {
  if (els.toolsMenu.hidden) return;
  els.toolsMenu.hidden = true;
  els.toolsButton.setAttribute('aria-expanded', 'false');
  options.note = '';
  optionsRender();
  if (focusButton) els.toolsButton.focus();
}

export function optionsBind() {
  optionsLoad();
  optionsRender();
  els.webToggle.addEventListener('click', () => {
    options.web = !options.web;
    optionsSave();
    optionsRender();
  });
  els.toolsButton.addEventListener('click', () => {
    if (els.toolsMenu.hidden) toolsMenuOpen();
    else toolsMenuClose(false);
  });
  els.toolsMenu.addEventListener('change', (event) => {
    const input = event.target;
    options.note = '';
    if (input.name === 'tools-mode') {
      options.tools = input.value;
    } else if (input.type === 'checkbox') {
      const all = Array.from(els.toolsList.querySelectorAll('input[type="checkbox"]'));
      const ticked = all.filter((b) => b.checked).map((b) => b.value);
      if (!ticked.length) {
        input.checked = true; // the server needs at least one tool to offer
        options.note = 'At least one tool stays offered.';
      } else {
        options.toolNames = ticked.length < all.length ? ticked : null;
      }
    }
    optionsSave();
    optionsRender();
  });
  els.toolsAll.addEventListener('click', () => {
    options.toolNames = null;
    options.note = '';
    optionsSave();
    optionsRender();
    const first = els.toolsList.querySelector('input');
    if (first) first.focus(); // the button hides itself: keep the focus in the menu
  });
  els.toolsMenu.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' || event.isComposing) return;
    // The menu sits in the composer's form: Enter must not send the message.
    event.preventDefault();
    if (event.target.name === 'tools-mode') toolsMenuClose(true);
  });
  document.addEventListener('pointerdown', (event) => {
    if (els.toolsMenu.hidden) return;
    if (els.toolsMenu.contains(event.target) || els.toolsButton.contains(event.target)) return;
    toolsMenuClose(false);
  });
  els.toolsMenu.parentElement.addEventListener('focusout', (event) => {
    const to = event.relatedTarget;
    if (!to || els.toolsMenu.contains(to) || els.toolsButton.contains(to)) return;
    toolsMenuClose(false);
  });
}

/** Escape (hooks.escape): closes the Tools menu when it is open; true when it was. */
export function toolsMenuEscape() {
  if (els.toolsMenu.hidden) return false;
  toolsMenuClose(true);
  return true;
}
