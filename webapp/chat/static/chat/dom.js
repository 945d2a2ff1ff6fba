/*
 * dom.js: the page's elements and the helpers that make nodes. Text only ever goes in
 * with textContent (node's third argument) or as text nodes: no module assigns innerHTML
 * (the one exception is highlight.js's escaped output, in markdown.js).
 */

export const $ = (id) => document.getElementById(id);

/** The elements both apps' pages have (office-only ones are looked up by office/ modules). */
export const els = {
  layout: $('layout'),
  sidebar: $('sidebar'),
  backdrop: $('backdrop'),
  menuButton: $('menu-button'),
  sidebarClose: $('sidebar-close'),
  newChat: document.querySelector('[data-testid="new-chat"]'),
  convList: $('conversation-list'),
  chatImport: $('chat-import'),
  convEmpty: $('conversation-empty'),
  appSwitch: $('app-switch'),
  appSwitchTitle: $('app-switch-title'),
  picker: $('persona-picker'),
  modelName: $('model-name'),
  conn: $('connection-state'),
  scroller: $('scroller'),
  intro: $('intro'),
  introAvatar: $('intro-avatar'),
  introName: $('intro-name'),
  introDescription: $('intro-description'),
  introHint: $('intro-hint'),
  messages: $('message-list'),
  jumpBottom: $('jump-bottom'),
  banner: $('status-banner'),
  bannerText: $('status-text'),
  errorLine: $('error-line'),
  errorText: $('error-text'),
  errorDismiss: $('error-dismiss'),
  composer: $('composer'),
  input: $('message-input'),
  counter: $('char-counter'),
  send: $('send-button'),
  hint: $('composer-hint'),
  main: $('main'),
};

export function node(tag, className, text) {
  const n = document.createElement(tag);
  if (className) n.className = className;
  if (text !== undefined && text !== null) n.textContent = text;
  return n;
}

const ICONS = {
  copy: ['M9 9h10v10H9z', 'M5 15V5h10'],
  check: ['M5 12l5 5 9-10'],
  close: ['M6 6l12 12M18 6L6 18'],
  file: ['M6 3h8l4 4v14H6z', 'M14 3v4h4', 'M9 12h6M9 16h6'],
  tool: ['M14.7 6.3a4 4 0 0 0-5.4 5.4L3 18l3 3 6.3-6.3a4 4 0 0 0 5.4-5.4l-2.5 2.5-2.5-.5-.5-2.5z'],
  shield: ['M12 3l8 3v6c0 5-3.5 8-8 9-4.5-1-8-4-8-9V6z', 'M12 8v4M12 15.5v.5'],
  alert: ['M12 8v5M12 16.5v.5M12 3l10 18H2z'],
  info: ['M12 11v6M12 7.5v.5', 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z'],
  regenerate: ['M20 11a8 8 0 1 0-2.3 5.7', 'M20 5v6h-6'],
  continue: ['M4 12h11', 'M11 7l5 5-5 5', 'M20 5v14'],
  trash: ['M4 7h16', 'M10 11v6M14 11v6', 'M6 7l1 13h10l1-13', 'M9 7V4h6v3'],
  edit: ['M4 20h4L19 9l-4-4L4 16z', 'M14 6l4 4'],
  download: ['M12 4v11', 'M7 10l5 5 5-5', 'M5 20h14'],
  branch: ['M6 3v12', 'M18 8a2.5 2.5 0 1 0 0-5 2.5 2.5 0 0 0 0 5z', 'M6 21a2.5 2.5 0 1 0 0-5 2.5 2.5 0 0 0 0 5z', 'M18 8c0 5-6 5-10.5 9'],
};

export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  for (const d of ICONS[name]) {
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}

export function spinner() {
  const s = node('span', 'spinner');
  s.setAttribute('aria-hidden', 'true');
  return s;
}
