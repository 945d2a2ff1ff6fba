/*
 * markdown.js: a small, safe Markdown renderer and code highlighter for the chat UI.
 *
 * Safe by construction: every node is made with createElement / createTextNode /
 * textContent and put in place with append. No text from the model, the user or a
 * persona ever reaches innerHTML, outerHTML, insertAdjacentHTML or document.write, so
 * "<script>" or "<img onerror=…>" in a reply can only ever show up as literal text.
 * Links keep only http:, https: and mailto: addresses; images become plain links.
 *
 * It is built for streaming: half-written input (an unclosed ``` fence, a dangling
 * "**") renders sensibly, and a whole reply is cheap enough to re-render every frame.
 *
 * API (window.PersonaMarkdown):
 *   render(text)               → DocumentFragment
 *   highlight(code, language)  → DocumentFragment (<span class="tok-…"> runs)
 *   safeHref(url)              → the trimmed URL when it is an allowed absolute one, else null
 *   copyText(text)             → Promise<boolean> (clipboard, with a fallback for
 *                                plain-http pages where navigator.clipboard is absent)
 */
(function () {
  'use strict';

  // ---------------------------------------------------------------------------
  // DOM helpers: the only way this file makes nodes.

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function appendText(parent, text) {
    if (!text) return;
    const parts = text.split('\n');
    parts.forEach((part, index) => {
      if (index > 0) parent.append(el('br'));
      if (part) parent.append(document.createTextNode(part));
    });
  }

  // ---------------------------------------------------------------------------
  // Links

  const ALLOWED_PROTOCOLS = new Set(['http:', 'https:', 'mailto:']);

  function safeHref(raw) {
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

  async function copyText(text) {
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
  // Inline parsing: code spans, links, images (as links), autolinks, emphasis.

  const ESCAPABLE = /[!-/:-@[-`{-~]/;
  const WORD_CHAR = /[\p{L}\p{N}_]/u;
  const BARE_URL = /https?:\/\/[^\s<>"'`]+|mailto:[^\s<>"'`()]+@[^\s<>"'`()]+/y;
  const ANGLE_URL = /<((?:https?:\/\/|mailto:)[^\s<>]+)>/y;

  function runLength(text, i, ch) {
    let n = 0;
    while (text[i + n] === ch) n += 1;
    return n;
  }

  /** Parses "[label](dest "title")" starting at text[i] === '['. */
  function parseLink(text, i) {
    let depth = 0;
    let j = i;
    for (; j < text.length; j += 1) {
      const c = text[j];
      if (c === '\\') {
        j += 1;
      } else if (c === '`') {
        // A code span inside the label hides its brackets.
        const n = runLength(text, j, '`');
        const close = text.indexOf('`'.repeat(n), j + n);
        if (close === -1) {
          j += n - 1;
        } else {
          j = close + n - 1;
        }
      } else if (c === '[') {
        depth += 1;
      } else if (c === ']') {
        depth -= 1;
        if (depth === 0) break;
      } else if (c === '\n' && text[j + 1] === '\n') {
        return null;
      }
    }
    if (j >= text.length || text[j + 1] !== '(') return null;
    const label = text.slice(i + 1, j);
    let k = j + 2;
    while (text[k] === ' ') k += 1;
    let dest = '';
    if (text[k] === '<') {
      const close = text.indexOf('>', k);
      if (close === -1) return null;
      dest = text.slice(k + 1, close);
      k = close + 1;
    } else {
      let parens = 0;
      const start = k;
      for (; k < text.length; k += 1) {
        const c = text[k];
        if (c === '\\') {
          k += 1;
          continue;
        }
        if (/\s/.test(c)) break;
        if (c === '(') parens += 1;
        if (c === ')') {
          if (parens === 0) break;
          parens -= 1;
        }
      }
      dest = text.slice(start, k);
    }
    while (text[k] === ' ') k += 1;
    let title = '';
    const quote = text[k];
    if (quote === '"' || quote === "'") {
      const close = text.indexOf(quote, k + 1);
      if (close === -1) return null;
      title = text.slice(k + 1, close);
      k = close + 1;
      while (text[k] === ' ') k += 1;
    }
    if (text[k] !== ')') return null;
    return { label, dest, title, end: k + 1 };
  }

  /** Finds the closing emphasis run for an opener of `n` times `ch` starting at `from`. */
  function findCloser(text, from, ch, n) {
    for (let j = from; j < text.length; j += 1) {
      const c = text[j];
      if (c === '\\') {
        j += 1;
        continue;
      }
      if (c === '`') {
        const m = runLength(text, j, '`');
        const close = text.indexOf('`'.repeat(m), j + m);
        j = close === -1 ? j + m - 1 : close + m - 1;
        continue;
      }
      if (c === '\n' && text[j + 1] === '\n') return -1;
      if (c !== ch) continue;
      const m = runLength(text, j, ch);
      const before = text[j - 1];
      const after = text[j + m];
      const closes =
        m === n &&
        before !== undefined &&
        !/\s/.test(before) &&
        (ch !== '_' || after === undefined || !WORD_CHAR.test(after));
      if (closes && j > from) return j;
      j += m - 1;
    }
    return -1;
  }

  function renderInline(text, parent, options) {
    const noLinks = Boolean(options && options.noLinks);
    let buffer = '';
    const flush = () => {
      appendText(parent, buffer);
      buffer = '';
    };
    let i = 0;
    while (i < text.length) {
      const c = text[i];

      if (c === '\\' && i + 1 < text.length && ESCAPABLE.test(text[i + 1])) {
        buffer += text[i + 1];
        i += 2;
        continue;
      }

      if (c === '`') {
        const n = runLength(text, i, '`');
        const close = text.indexOf('`'.repeat(n), i + n);
        if (close !== -1 && text[close + n] !== '`') {
          let code = text.slice(i + n, close).replace(/\n/g, ' ');
          if (code.length > 2 && code.startsWith(' ') && code.endsWith(' ')) code = code.slice(1, -1);
          flush();
          parent.append(el('code', 'md-inline-code', code));
          i = close + n;
          continue;
        }
        buffer += text.slice(i, i + n);
        i += n;
        continue;
      }

      if (c === '!' && text[i + 1] === '[' && !noLinks) {
        const link = parseLink(text, i + 1);
        if (link) {
          flush();
          const href = safeHref(link.dest);
          if (href) {
            // Images are never loaded: they show as a link to the picture.
            const a = linkEl(href, link.title);
            a.classList.add('md-image-link');
            a.append(imageIcon());
            a.append(document.createTextNode((link.label.trim() || 'image')));
            parent.append(a);
          } else {
            appendText(parent, text.slice(i, link.end));
          }
          i = link.end;
          continue;
        }
      }

      if (c === '[' && !noLinks) {
        const link = parseLink(text, i);
        if (link) {
          flush();
          const href = safeHref(link.dest);
          if (href) {
            const a = linkEl(href, link.title);
            renderInline(link.label || link.dest, a, { noLinks: true });
            parent.append(a);
          } else {
            // Not an allowed address: the whole thing stays visible as plain text.
            appendText(parent, text.slice(i, link.end));
          }
          i = link.end;
          continue;
        }
      }

      if (c === '<' && !noLinks) {
        ANGLE_URL.lastIndex = i;
        const m = ANGLE_URL.exec(text);
        const href = m && safeHref(m[1]);
        if (href) {
          flush();
          const a = linkEl(href);
          a.textContent = m[1];
          parent.append(a);
          i += m[0].length;
          continue;
        }
      }

      if ((c === 'h' || c === 'm') && !noLinks && (i === 0 || !WORD_CHAR.test(text[i - 1]))) {
        BARE_URL.lastIndex = i;
        const m = BARE_URL.exec(text);
        if (m) {
          let url = m[0];
          // Trailing punctuation belongs to the sentence, not the address.
          for (;;) {
            const last = url[url.length - 1];
            if (/[.,:;!?*_~'"]/.test(last)) {
              url = url.slice(0, -1);
            } else if (last === ')' && (url.match(/\(/g) || []).length < (url.match(/\)/g) || []).length) {
              url = url.slice(0, -1);
            } else {
              break;
            }
          }
          const href = safeHref(url);
          if (href && url.length > 8) {
            flush();
            const a = linkEl(href);
            a.textContent = url;
            parent.append(a);
            i += url.length;
            continue;
          }
        }
      }

      if (c === '*' || c === '_' || c === '~') {
        const n = runLength(text, i, c);
        const after = text[i + n];
        const before = text[i - 1];
        const opens =
          after !== undefined &&
          !/\s/.test(after) &&
          (c !== '_' || before === undefined || !WORD_CHAR.test(before)) &&
          (c !== '~' || n === 2);
        if (opens && n <= 3) {
          const close = findCloser(text, i + n, c, n);
          if (close !== -1) {
            flush();
            const inner = text.slice(i + n, close);
            let node;
            if (c === '~') {
              node = el('del');
              renderInline(inner, node, options);
            } else if (n === 3) {
              node = el('strong');
              const em = el('em');
              renderInline(inner, em, options);
              node.append(em);
            } else {
              node = el(n === 2 ? 'strong' : 'em');
              renderInline(inner, node, options);
            }
            parent.append(node);
            i = close + n;
            continue;
          }
        }
        buffer += text.slice(i, i + n);
        i += n;
        continue;
      }

      buffer += c;
      i += 1;
    }
    flush();
  }

  // ---------------------------------------------------------------------------
  // Block parsing

  const RE_BLANK = /^[ \t]*$/;
  const RE_FENCE_OPEN = /^( {0,3})(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$/;
  const RE_HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
  const RE_HR = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  const RE_QUOTE = /^ {0,3}> ?(.*)$/;
  const RE_LIST_ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:([ \t]+)(.*))?$/;
  const RE_TABLE_SEP = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;

  function indentOf(line) {
    const m = /^[ \t]*/.exec(line)[0];
    return m.replace(/\t/g, '    ').length;
  }

  function stripIndent(line, n) {
    let i = 0;
    let width = 0;
    while (i < line.length && width < n) {
      if (line[i] === ' ') width += 1;
      else if (line[i] === '\t') width += 4;
      else break;
      i += 1;
    }
    return line.slice(i);
  }

  function matchListItem(line) {
    const m = RE_LIST_ITEM.exec(line);
    if (!m) return null;
    // "-" or "1." alone on a line is an empty item; otherwise a space must follow.
    if (m[3] === undefined && m[4] === undefined && line.trim() !== m[2]) return null;
    const marker = m[2];
    const ordered = /\d/.test(marker[0]);
    const spaces = m[3] ? m[3].replace(/\t/g, '    ').length : 1;
    const indent = m[1].length;
    return {
      indent,
      ordered,
      start: ordered ? parseInt(marker, 10) : 1,
      content: m[4] || '',
      // Where continuation lines of this item start (CommonMark's content column).
      contentIndent: indent + marker.length + (spaces > 4 ? 1 : spaces),
    };
  }

  function isTableStart(lines, i) {
    return (
      i + 1 < lines.length &&
      lines[i].includes('|') &&
      RE_TABLE_SEP.test(lines[i + 1]) &&
      lines[i + 1].includes('-') &&
      (lines[i + 1].includes('|') || lines[i].trim().startsWith('|'))
    );
  }

  function startsBlock(lines, i) {
    const line = lines[i];
    return (
      RE_FENCE_OPEN.test(line) ||
      RE_HEADING.test(line) ||
      RE_HR.test(line) ||
      RE_QUOTE.test(line) ||
      (matchListItem(line) !== null && matchListItem(line).indent <= 3 && matchListItem(line).content !== '') ||
      isTableStart(lines, i)
    );
  }

  function splitRow(line) {
    let row = line.trim();
    if (row.startsWith('|')) row = row.slice(1);
    if (row.endsWith('|') && !row.endsWith('\\|')) row = row.slice(0, -1);
    const cells = [];
    let cell = '';
    let inCode = false;
    for (let i = 0; i < row.length; i += 1) {
      const c = row[i];
      if (c === '\\' && row[i + 1] === '|') {
        cell += '|';
        i += 1;
      } else if (c === '`') {
        inCode = !inCode;
        cell += c;
      } else if (c === '|' && !inCode) {
        cells.push(cell.trim());
        cell = '';
      } else {
        cell += c;
      }
    }
    cells.push(cell.trim());
    return cells;
  }

  function codeBlock(code, language) {
    const lang = (language || '').toLowerCase().replace(/[^a-z0-9+#._-]/g, '').slice(0, 32);
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
    codeEl.append(highlight(code, lang));
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

  /**
   * Parses `lines` into block elements appended to `parent`. With tight=true (inside a
   * tight list item) paragraphs are written inline, without a <p>.
   */
  function renderBlocks(lines, parent, tight, depth) {
    if (depth > 12) {
      // Absurd nesting (a wall of ">" or list markers): stop parsing, keep the text.
      appendText(parent, lines.join('\n'));
      return;
    }
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];

      if (RE_BLANK.test(line)) {
        i += 1;
        continue;
      }

      // Fenced code. An unclosed fence runs to the end (a reply still streaming).
      const fence = RE_FENCE_OPEN.exec(line);
      if (fence) {
        const indent = fence[1].length;
        const marker = fence[2];
        const body = [];
        const closing = new RegExp('^ {0,3}' + (marker[0] === '`' ? '`' : '~') + '{' + marker.length + ',}[ \\t]*$');
        i += 1;
        while (i < lines.length) {
          if (closing.test(lines[i])) {
            i += 1;
            break;
          }
          body.push(stripIndent(lines[i], indent));
          i += 1;
        }
        parent.append(codeBlock(body.join('\n'), fence[3]));
        continue;
      }

      const heading = RE_HEADING.exec(line);
      if (heading) {
        const h = el('h' + heading[1].length, 'md-heading');
        renderInline(heading[2] || '', h);
        parent.append(h);
        i += 1;
        continue;
      }

      if (RE_HR.test(line)) {
        parent.append(el('hr'));
        i += 1;
        continue;
      }

      if (RE_QUOTE.test(line)) {
        const inner = [];
        while (i < lines.length) {
          const q = RE_QUOTE.exec(lines[i]);
          if (q) {
            inner.push(q[1]);
          } else if (!RE_BLANK.test(lines[i]) && inner.length && !RE_BLANK.test(inner[inner.length - 1]) && !startsBlock(lines, i)) {
            inner.push(lines[i]); // lazy continuation of the quoted paragraph
          } else {
            break;
          }
          i += 1;
        }
        const quote = el('blockquote');
        renderBlocks(inner, quote, false, depth + 1);
        parent.append(quote);
        continue;
      }

      const item = matchListItem(line);
      if (item && item.indent <= 3) {
        i = renderList(lines, i, parent, depth);
        continue;
      }

      if (isTableStart(lines, i)) {
        const header = splitRow(lines[i]);
        const aligns = splitRow(lines[i + 1]).map((spec) => {
          const left = spec.startsWith(':');
          const right = spec.endsWith(':');
          return left && right ? 'center' : right ? 'right' : left ? 'left' : '';
        });
        const table = el('table');
        const thead = el('thead');
        const headRow = el('tr');
        header.forEach((cell, c) => {
          const th = el('th');
          if (aligns[c]) th.style.textAlign = aligns[c];
          renderInline(cell, th);
          headRow.append(th);
        });
        thead.append(headRow);
        table.append(thead);
        const tbody = el('tbody');
        i += 2;
        while (i < lines.length && !RE_BLANK.test(lines[i]) && lines[i].includes('|')) {
          const tr = el('tr');
          const cells = splitRow(lines[i]);
          for (let c = 0; c < header.length; c += 1) {
            const td = el('td');
            if (aligns[c]) td.style.textAlign = aligns[c];
            renderInline(cells[c] || '', td);
            tr.append(td);
          }
          tbody.append(tr);
          i += 1;
        }
        table.append(tbody);
        const wrap = el('div', 'md-table-wrap');
        wrap.append(table);
        parent.append(wrap);
        continue;
      }

      // Paragraph: runs until a blank line or the start of another block.
      const para = [line.trim()];
      i += 1;
      while (i < lines.length && !RE_BLANK.test(lines[i]) && !startsBlock(lines, i)) {
        para.push(lines[i].trim());
        i += 1;
      }
      const text = para.join('\n');
      if (tight) {
        renderInline(text, parent);
      } else {
        const p = el('p');
        renderInline(text, p);
        parent.append(p);
      }
    }
  }

  /** Renders the list starting at lines[start]; returns the index after it. */
  function renderList(lines, start, parent, depth) {
    const first = matchListItem(lines[start]);
    const list = el(first.ordered ? 'ol' : 'ul');
    if (first.ordered && first.start !== 1) list.start = first.start;
    const items = [];
    let loose = false;
    let i = start;
    while (i < lines.length) {
      const m = matchListItem(lines[i]);
      if (!m || m.ordered !== first.ordered || m.indent >= first.contentIndent) break;
      const body = [m.content];
      const threshold = Math.min(m.contentIndent, m.indent + 2);
      let sawBlank = false;
      i += 1;
      while (i < lines.length) {
        const line = lines[i];
        if (RE_BLANK.test(line)) {
          // A blank line stays in the list only if the list goes on after it.
          let j = i + 1;
          while (j < lines.length && RE_BLANK.test(lines[j])) j += 1;
          if (j >= lines.length) break;
          const next = matchListItem(lines[j]);
          const continues = indentOf(lines[j]) >= threshold;
          const sibling = next && next.ordered === first.ordered && next.indent < first.contentIndent;
          if (!continues && !sibling) break;
          if (!continues) {
            loose = true;
            i = j;
            break;
          }
          sawBlank = true;
          body.push('');
          i += 1;
          continue;
        }
        if (indentOf(line) >= threshold) {
          body.push(stripIndent(line, Math.min(indentOf(line), m.contentIndent)));
          i += 1;
          continue;
        }
        const next = matchListItem(line);
        if (next) break;
        // Lazy continuation: an unindented line right after paragraph text.
        const prev = body[body.length - 1];
        if (prev !== '' && !startsBlock(lines, i)) {
          body.push(line.trim());
          i += 1;
          continue;
        }
        break;
      }
      if (sawBlank) loose = true;
      items.push(body);
      if (i < lines.length && RE_BLANK.test(lines[i])) break;
    }
    items.forEach((body) => {
      const li = el('li');
      const task = /^\[([ xX])\][ \t]+/.exec(body[0]);
      if (task) {
        body[0] = body[0].slice(task[0].length);
        li.className = 'md-task';
        li.append(el('span', 'md-task-box', task[1] === ' ' ? '☐ ' : '☑ '));
      }
      renderBlocks(body, li, !loose, depth + 1);
      list.append(li);
    });
    parent.append(list);
    return i;
  }

  function render(text) {
    const fragment = document.createDocumentFragment();
    const source = String(text === undefined || text === null ? '' : text)
      .replace(/\r\n?/g, '\n')
      .replace(/\u0000/g, '\uFFFD');
    renderBlocks(source.split('\n'), fragment, false, 0);
    return fragment;
  }

  // ---------------------------------------------------------------------------
  // Code highlighting: a small rule-based tokenizer per language. Each rule is a
  // sticky regex and a class (or a function that classifies the match).

  function words(list) {
    return new Set(list.split(/\s+/).filter(Boolean));
  }

  function wordRule(spec) {
    // Identifiers: keyword, literal, builtin, function call, or plain.
    return [
      (match, text, end) => {
        const word = match[0];
        const key = spec.caseInsensitive ? word.toLowerCase() : word;
        if (spec.keywords.has(key)) return 'keyword';
        if (spec.literals && spec.literals.has(key)) return 'literal';
        if (spec.builtins && spec.builtins.has(key)) return 'builtin';
        if (/^\s*\(/.test(text.slice(end, end + 40))) return 'function';
        if (spec.types && /^[A-Z][a-z0-9]/.test(word)) return 'type';
        return null;
      },
      spec.wordPattern || /[A-Za-z_$][\w$]*/y,
    ];
  }

  const NUMBER = /(?:0[xX][\da-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?[jJnLlfFuU]?)(?![\w$])/y;
  const WHITESPACE = [null, /\s+/y];

  const JS_KEYWORDS =
    'async await break case catch class const continue debugger default delete do else export extends finally for from function if import in instanceof let new of return static super switch this throw try typeof var void while with yield get set';
  const TS_EXTRA =
    'interface type enum implements declare readonly namespace abstract private protected public as is keyof infer satisfies unique module';

  function jsSpec(extra) {
    const spec = {
      keywords: words(JS_KEYWORDS + ' ' + (extra || '')),
      literals: words('true false null undefined NaN Infinity'),
      builtins: words(
        'console window document Math JSON Object Array String Number Boolean Promise Map Set Symbol Date Error RegExp fetch require module exports process globalThis' +
          (extra ? ' string number boolean any unknown never void object bigint' : '')
      ),
      types: true,
    };
    return [
      WHITESPACE,
      ['comment', /\/\/[^\n]*/y],
      ['comment', /\/\*[\s\S]*?(?:\*\/|$)/y],
      ['string', /`(?:\\[\s\S]|[^\\`])*`?/y],
      ['string', /"(?:\\.|[^"\\\n])*"?/y],
      ['string', /'(?:\\.|[^'\\\n])*'?/y],
      ['number', NUMBER],
      ['meta', /@[A-Za-z_$][\w$.]*/y],
      wordRule(spec),
    ];
  }

  const PYTHON_SPEC = {
    keywords: words(
      'and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield match case'
    ),
    literals: words('True False None'),
    builtins: words(
      'print len range int str float list dict set tuple bool open enumerate zip map filter sorted reversed sum min max abs isinstance type super self cls object Exception ValueError TypeError KeyError'
    ),
    types: true,
  };

  const BASH_SPEC = {
    keywords: words('if then else elif fi for while until do done case esac in function return export local select time'),
    literals: words('true false'),
    builtins: words(
      'echo cd ls cat grep sed awk printf read set unset source exit test mkdir rm cp mv chmod chown curl wget sudo apt pip python git docker make kill tar ssh'
    ),
    wordPattern: /[A-Za-z_][\w-]*/y,
  };

  const SQL_SPEC = {
    caseInsensitive: true,
    keywords: words(
      'select from where and or not insert into values update set delete create table drop alter add column primary key foreign references index view join inner left right full outer cross on as group by order having limit offset union all distinct case when then else end is null like in between exists returning with desc asc default unique check constraint if begin commit rollback transaction'
    ),
    literals: words('true false null'),
    builtins: words(
      'count sum avg min max coalesce now cast lower upper length substring round date integer int bigint text varchar char boolean serial timestamp timestamptz numeric real float json jsonb uuid'
    ),
  };

  function htmlTag(match, emit) {
    const tag = match[0];
    const m = /^(<\/?)([A-Za-z][\w:.-]*)/.exec(tag);
    emit('punct', m[1]);
    emit('tag', m[2]);
    let i = m[0].length;
    const attr = /\s+|([^\s"'>/=]+)|(=)|("[^"]*"?|'[^']*'?)|(\/?>)|([\s\S])/y;
    while (i < tag.length) {
      attr.lastIndex = i;
      const a = attr.exec(tag);
      if (!a) break;
      if (a[1]) emit('attr', a[1]);
      else if (a[2]) emit('punct', a[2]);
      else if (a[3]) emit('string', a[3]);
      else if (a[4]) emit('punct', a[4]);
      else emit(null, a[0]);
      i += a[0].length;
    }
  }

  const LANGS = {
    python: [
      WHITESPACE,
      ['comment', /#[^\n]*/y],
      ['string', /[rRbBuUfF]{0,2}(?:"""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$))/y],
      ['string', /[rRbBuUfF]{0,2}(?:"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?)/y],
      ['number', NUMBER],
      ['meta', /@[A-Za-z_][\w.]*/y],
      wordRule(PYTHON_SPEC),
    ],
    js: jsSpec(''),
    ts: jsSpec(TS_EXTRA),
    json: [
      WHITESPACE,
      ['comment', /\/\/[^\n]*/y],
      ['property', /"(?:\\.|[^"\\\n])*"(?=\s*:)/y],
      ['string', /"(?:\\.|[^"\\\n])*"?/y],
      ['number', /-?(?:\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/y],
      ['literal', /\b(?:true|false|null)\b/y],
    ],
    bash: [
      WHITESPACE,
      ['variable', /\$(?:\{[^}\n]*\}?|[\w@#?*!$-]+|\()/y],
      ['comment', /(?<![^\s;])#[^\n]*/y],
      ['string', /"(?:\\.|[^"\\])*"?/y],
      ['string', /'[^']*'?/y],
      ['attr', /(?<=\s)--?[A-Za-z][\w-]*/y],
      ['number', /\b\d+\b/y],
      wordRule(BASH_SPEC),
    ],
    html: [
      WHITESPACE,
      ['comment', /<!--[\s\S]*?(?:-->|$)/y],
      ['meta', /<![A-Za-z][^>]*>?/y],
      [htmlTag, /<\/?[A-Za-z][\w:.-]*(?:\s+[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"?|'[^']*'?|[^\s"'=<>`]+))?)*\s*\/?>?/y],
      ['string', /&#?\w+;/y],
    ],
    css: [
      WHITESPACE,
      ['comment', /\/\*[\s\S]*?(?:\*\/|$)/y],
      ['string', /"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?/y],
      ['keyword', /@[\w-]+|!important/y],
      ['number', /#[\da-fA-F]{3,8}(?![\w-])/y],
      ['property', /--?[A-Za-z][\w-]*(?=\s*:(?!:))|[A-Za-z-]+(?=\s*:\s*[^;{}]*;)/y],
      ['number', /-?(?:\d+\.?\d*|\.\d+)(?:px|em|rem|%|vh|vw|dvh|vmin|vmax|s|ms|deg|fr|ch|ex|pt)?(?![\w-])/y],
      ['function', /[A-Za-z-]+(?=\()/y],
      ['meta', /::?[A-Za-z-]+/y],
      ['tag', /[.#][A-Za-z_-][\w-]*/y],
    ],
    sql: [
      WHITESPACE,
      ['comment', /--[^\n]*/y],
      ['comment', /\/\*[\s\S]*?(?:\*\/|$)/y],
      ['string', /'(?:''|[^'])*'?/y],
      ['property', /"(?:""|[^"])*"?/y],
      ['number', NUMBER],
      wordRule(SQL_SPEC),
    ],
  };

  const ALIASES = {
    py: 'python', python3: 'python', py3: 'python', python: 'python',
    js: 'js', javascript: 'js', jsx: 'js', mjs: 'js', cjs: 'js', node: 'js',
    ts: 'ts', typescript: 'ts', tsx: 'ts',
    json: 'json', jsonc: 'json', json5: 'json',
    bash: 'bash', sh: 'bash', shell: 'bash', zsh: 'bash', console: 'bash', shellsession: 'bash',
    html: 'html', htm: 'html', xml: 'html', svg: 'html', xhtml: 'html', vue: 'html',
    css: 'css', scss: 'css', less: 'css',
    sql: 'sql', postgres: 'sql', postgresql: 'sql', mysql: 'sql', sqlite: 'sql', plsql: 'sql',
  };

  function highlight(code, language) {
    const fragment = document.createDocumentFragment();
    const rules = LANGS[ALIASES[String(language || '').toLowerCase()]];
    if (!rules) {
      fragment.append(document.createTextNode(code));
      return fragment;
    }
    let plain = '';
    const emit = (cls, value) => {
      if (!value) return;
      if (!cls) {
        plain += value;
        return;
      }
      if (plain) {
        fragment.append(document.createTextNode(plain));
        plain = '';
      }
      fragment.append(el('span', 'tok-' + cls, value));
    };
    let i = 0;
    while (i < code.length) {
      let matched = false;
      for (const [cls, re] of rules) {
        re.lastIndex = i;
        const m = re.exec(code);
        if (!m || !m[0]) continue;
        const end = i + m[0].length;
        if (typeof cls === 'function') {
          if (cls.length === 2) {
            cls(m, emit); // a function that emits its own sub-tokens
          } else {
            emit(cls(m, code, end), m[0]);
          }
        } else {
          emit(cls, m[0]);
        }
        i = end;
        matched = true;
        break;
      }
      if (!matched) {
        plain += code[i];
        i += 1;
      }
    }
    if (plain) fragment.append(document.createTextNode(plain));
    return fragment;
  }

  window.PersonaMarkdown = Object.freeze({ render, highlight, safeHref, copyText });
})();
