/*
 * drawer.js: at phone width the sidebar is a drawer over the chat.
 */
import { els } from './dom.js';

export const phoneQuery = window.matchMedia('(max-width: 720px)');

export function isPhone() {
  return phoneQuery.matches;
}

export function drawerOpen() {
  els.layout.classList.add('sidebar-open');
  els.backdrop.hidden = false;
  els.menuButton.setAttribute('aria-expanded', 'true');
  els.newChat.focus();
}

export function drawerClose() {
  if (!els.layout.classList.contains('sidebar-open')) return;
  els.layout.classList.remove('sidebar-open');
  els.backdrop.hidden = true;
  els.menuButton.setAttribute('aria-expanded', 'false');
}
