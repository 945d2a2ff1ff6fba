/*
 * character/characters.js: the character library as the page knows it (GET /characters,
 * GET /user-persona), and each character as a persona of the picker and the thread: its
 * greetings counted as the server counts them, its avatar, a short blurb.
 *
 * Cards are untrusted: their text is only ever placed with textContent, or through
 * markdown.js's render (the greeting), by the modules that show it.
 */
import { API, state } from '../state.js';
import { api } from '../api.js';
import { macrosShow } from '../thread.js';

export const library = {
  characters: [], // as GET /characters lists them: built-ins first, then the user's own
  persona: { name: '', description: '' }, // the user persona (GET /user-persona)
};

/** A character by id, or null. */
export function characterGet(id) {
  return library.characters.find((c) => c.id === id) || null;
}

/** The avatar's address (avatar_url is relative to the app), or null. */
export function avatarSrc(character) {
  const url = character && character.avatar_url;
  return typeof url === 'string' && url && !/^[a-z]+:|^\/\//i.test(url) ? `${API}/${url.replace(/^\//, '')}` : null;
}

/** A card's text as the server reads it (webapp.characters.library._text): LF line ends, trimmed. */
function cardText(value) {
  return typeof value === 'string' ? value.replace(/\r\n/g, '\n').trim() : '';
}

/** The greetings a chat may start with: the first message, then the alternates (blank ones skipped). */
export function greetingsOfCard(data) {
  const alternates = Array.isArray(data.alternate_greetings) ? data.alternate_greetings : [];
  return [data.first_mes, ...alternates].map(cardText).filter(Boolean);
}

/** The first paragraph of the description, short, with {{char}}/{{user}} shown as names. */
function blurbOf(data, name) {
  const first = cardText(data.description).split(/\n\s*\n/)[0] || '';
  const text = macrosShow(first, name).replace(/\s+/g, ' ');
  if (text.length <= 240) return text;
  const cut = text.slice(0, 240);
  return `${cut.slice(0, Math.max(cut.lastIndexOf(' '), 200))}…`;
}

function personaOf(character, builtins) {
  const data = character.data || {};
  const name = typeof data.name === 'string' && data.name.trim() ? data.name : 'Unnamed character';
  // V3: {{char}} stands for the nickname when the card has one (as on the server).
  const called = typeof data.nickname === 'string' && data.nickname.trim() ? data.nickname.trim() : name;
  const builtin = character.builtin ? builtins.get(character.id) : null;
  const greetings = greetingsOfCard(data);
  const blurb = builtin ? builtin.description || '' : blurbOf(data, called);
  let language = builtin ? builtin.language : undefined;
  if (!language && /[\uac00-\ud7a3]/.test(`${name} ${greetings[0] || ''}`)) language = 'ko';
  return {
    id: character.id,
    name,
    called,
    description: blurb,
    blurb,
    greeting: greetings[0] || '',
    greetings,
    language,
    avatarSrc: avatarSrc(character),
    builtin: Boolean(character.builtin),
  };
}

/**
 * hooks.personasList on the character page: the whole library for the picker (built-in
 * ones keep their language from GET /personas), and the user persona's name for {{user}}.
 */
export async function personasList(builtinList) {
  const [list, persona] = await Promise.all([
    api('/characters'),
    api('/user-persona').catch(() => null),
  ]);
  library.characters = (list && list.characters) || [];
  if (persona) {
    library.persona = { name: persona.name || '', description: persona.description || '' };
    if (library.persona.name) state.userName = library.persona.name;
  }
  const builtins = new Map(builtinList.map((p) => [p.id, p]));
  return library.characters.map((c) => personaOf(c, builtins));
}
