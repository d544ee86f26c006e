'use strict'
// fedictl TEST STAND-IN, NOT PeerTube.
//
// A YAML subset parser, enough for PeerTube's configuration files. Upstream reads them with
// node-config, which uses js-yaml; the stand-in has no npm dependencies, so it parses:
//   - block mappings and block sequences (also "- key: value" items and "-" alone on a line),
//   - plain, 'single-quoted' and "double-quoted" scalars, resolved like js-yaml's core schema:
//     null / ~ / empty, true / false (any case js-yaml accepts), integers (also 0x / 0o), floats,
//     .inf / .nan; anything else is a string (timestamps too),
//   - literal (|) and folded (>) block scalars with chomping indicators (- / +),
//   - one-line flow collections: [a, 'b', 3], [], {}, {a: 1},
//   - comments, a leading "---" and a trailing "...".
// Anything else (anchors, aliases, tags, merge keys, multi-line plain or flow scalars, tabs in
// indentation, duplicate keys) is refused with the file and line, never guessed at.

class YamlError extends Error {}

function parseYaml (text, filename = '<string>') {
  return new Parser(text, filename).document()
}

// One physical line: its indentation and its content without a trailing comment.
function lineRecord (raw, number, filename) {
  const match = /^( *)(.*)$/.exec(raw)
  const indent = match[1].length
  if (match[2].startsWith('\t')) {
    throw new YamlError(`${filename}:${number}: tabs are not allowed in indentation`)
  }
  const text = stripComment(match[2]).replace(/\s+$/, '')
  return { number, indent, text, raw }
}

// Cut a "# comment" that starts the line or follows whitespace, outside quotes.
function stripComment (text) {
  let quote = null
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (quote === "'") {
      if (c === "'" && text[i + 1] === "'") i++
      else if (c === "'") quote = null
    } else if (quote === '"') {
      if (c === '\\') i++
      else if (c === '"') quote = null
    } else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]))) {
      return text.slice(0, i)
    } else if ((c === "'" || c === '"') && (i === 0 || /[\s[{,:-]/.test(text[i - 1]))) {
      quote = c
    }
  }
  return text
}

function isSequenceItem (text) {
  return text === '-' || text.startsWith('- ')
}

// "key: rest" -> [key, rest]; null when the text is not a mapping entry.
function splitKey (text) {
  let key
  let rest
  const quoted = /^(?:'((?:[^']|'')*)'|"((?:[^"\\]|\\.)*)")\s*:(?:\s+(.*))?$/.exec(text)
  if (quoted) {
    key = quoted[1] !== undefined ? quoted[1].replace(/''/g, "'") : unescapeDouble(quoted[2])
    rest = quoted[3] || ''
  } else {
    const plain = /^([^\s'"#[\]{},&*!|>%@`-][^#]*?|-[^\s#][^#]*?)\s*:(?:\s+(.*))?$/.exec(text)
    if (!plain) return null
    key = plain[1]
    rest = plain[2] || ''
  }
  return [key, rest]
}

const ESCAPES = { 0: '\0', a: '\x07', b: '\b', t: '\t', n: '\n', v: '\v', f: '\f', r: '\r', e: '\x1b', ' ': ' ', '"': '"', '/': '/', '\\': '\\', N: '\x85', _: '\xa0' }

function unescapeDouble (body) {
  return body.replace(/\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)/g, (all, esc) => {
    if (esc.length > 1) return String.fromCodePoint(parseInt(esc.slice(1), 16))
    if (esc in ESCAPES) return ESCAPES[esc]
    throw new YamlError(`unknown escape ${all} in a double-quoted string`)
  })
}

// Resolve a plain scalar as js-yaml's default (core) schema does.
function resolvePlain (text) {
  if (/^(?:~|null|Null|NULL)?$/.test(text)) return null
  if (/^(?:true|True|TRUE)$/.test(text)) return true
  if (/^(?:false|False|FALSE)$/.test(text)) return false
  if (/^[-+]?(?:0|[1-9][0-9_]*)$/.test(text)) return Number(text.replace(/_/g, ''))
  if (/^[-+]?0x[0-9a-fA-F_]+$/.test(text)) return sign(text) * parseInt(text.replace(/^[-+]?0x|_/g, ''), 16)
  if (/^[-+]?0o[0-7_]+$/.test(text)) return sign(text) * parseInt(text.replace(/^[-+]?0o|_/g, ''), 8)
  if (/^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?$/.test(text) && /[0-9]/.test(text)) {
    return Number(text.replace(/_/g, ''))
  }
  if (/^[-+]?\.(?:inf|Inf|INF)$/.test(text)) return sign(text) * Infinity
  if (/^\.(?:nan|NaN|NAN)$/.test(text)) return NaN
  return text
}

function sign (text) {
  return text.startsWith('-') ? -1 : 1
}

class Parser {
  constructor (text, filename) {
    this.filename = filename
    const raws = text.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n').split('\n')
    // A "..." line ends the document: what follows is ignored.
    const end = raws.findIndex((raw) => /^\.\.\.(\s|$)/.test(raw))
    this.lines = (end === -1 ? raws : raws.slice(0, end)).map((raw, i) => lineRecord(raw, i + 1, filename))
    this.pos = 0
  }

  fail (line, message) {
    const where = line ? `${this.filename}:${line.number}` : this.filename
    return new YamlError(`${where}: ${message}`)
  }

  // The next line with content (skipping blank and comment-only lines), without consuming it.
  peek () {
    while (this.pos < this.lines.length) {
      const line = this.lines[this.pos]
      if (line.text !== '') return line
      this.pos++
    }
    return null
  }

  document () {
    let first = this.peek()
    if (first && first.indent === 0 && /^---(\s|$)/.test(first.text)) {
      if (first.text !== '---') throw this.fail(first, 'content after "---" is not supported')
      this.pos++
      first = this.peek()
    }
    if (!first) return null
    const value = this.node(first.indent, first)
    const extra = this.peek()
    if (extra) throw this.fail(extra, 'unexpected content (bad indentation?)')
    return value
  }

  // A block node whose first line is `line`, indented by `indent`.
  node (indent, line) {
    if (isSequenceItem(line.text)) return this.sequence(indent)
    if (splitKey(line.text)) return this.mapping(indent)
    this.pos++
    return this.inlineValue(line.text, line, indent)
  }

  mapping (indent) {
    const result = {}
    for (let line = this.peek(); line && line.indent >= indent; line = this.peek()) {
      if (line.indent > indent) throw this.fail(line, 'bad indentation of a mapping entry')
      if (isSequenceItem(line.text)) break
      const entry = splitKey(line.text)
      if (!entry) throw this.fail(line, `expected "key: value", got ${JSON.stringify(line.text)}`)
      const [key, rest] = entry
      if (key === '<<') throw this.fail(line, 'merge keys (<<) are not supported')
      if (Object.prototype.hasOwnProperty.call(result, key)) {
        throw this.fail(line, `duplicated mapping key ${JSON.stringify(key)}`)
      }
      this.pos++
      result[key] = this.value(rest, line, indent, true)
    }
    return result
  }

  sequence (indent) {
    const result = []
    for (let line = this.peek(); line && line.indent === indent && isSequenceItem(line.text); line = this.peek()) {
      const content = line.text.slice(1).replace(/^ +/, '')
      if (content !== '' && splitKey(content)) {
        // "- key: value": the item is a mapping whose keys line up with "key".
        const offset = line.text.length - content.length
        this.lines[this.pos] = { ...line, indent: indent + offset, text: content }
        result.push(this.mapping(indent + offset))
      } else {
        this.pos++
        result.push(this.value(content, line, indent, false))
      }
    }
    const next = this.peek()
    if (next && next.indent > indent) throw this.fail(next, 'bad indentation of a sequence entry')
    return result
  }

  // The value after "key:" or "-" on `line` (whose parent node is indented by `indent`).
  value (rest, line, indent, inMapping) {
    if (rest === '') {
      const next = this.peek()
      if (next && next.indent > indent) return this.node(next.indent, next)
      if (next && inMapping && next.indent === indent && isSequenceItem(next.text)) {
        return this.sequence(indent)
      }
      return null
    }
    return this.inlineValue(rest, line, indent)
  }

  inlineValue (text, line, indent) {
    if (/^[|>]/.test(text)) return this.blockScalar(text, line, indent)
    let result
    if (/^[[{]/.test(text)) {
      result = this.flow(text, line)
    } else if (/^[&*!]/.test(text)) {
      throw this.fail(line, 'anchors, aliases and tags are not supported')
    } else {
      result = this.scalar(text, line)
    }
    const next = this.peek()
    if (next && next.indent > indent && !isSequenceItem(next.text)) {
      throw this.fail(next, 'multi-line plain or quoted scalars are not supported')
    }
    return result
  }

  scalar (text, line) {
    if (text.startsWith("'")) {
      const m = /^'((?:[^']|'')*)'$/.exec(text)
      if (!m) throw this.fail(line, `unterminated or trailing text after a quoted string: ${text}`)
      return m[1].replace(/''/g, "'")
    }
    if (text.startsWith('"')) {
      const m = /^"((?:[^"\\]|\\.)*)"$/.exec(text)
      if (!m) throw this.fail(line, `unterminated or trailing text after a quoted string: ${text}`)
      try {
        return unescapeDouble(m[1])
      } catch (err) {
        throw this.fail(line, err.message)
      }
    }
    if (/^[%@`]/.test(text)) throw this.fail(line, `a plain scalar cannot start with ${text[0]}`)
    return resolvePlain(text)
  }

  blockScalar (header, line, indent) {
    const m = /^([|>])([-+]?)([1-9]?)([-+]?)$/.exec(header)
    if (!m) throw this.fail(line, `bad block scalar header ${JSON.stringify(header)}`)
    const folded = m[1] === '>'
    const chomp = m[2] || m[4]
    let contentIndent = m[3] ? indent + Number(m[3]) : null
    const body = []
    while (this.pos < this.lines.length) {
      const record = this.lines[this.pos]
      const blank = record.raw.trim() === ''
      if (!blank) {
        if (contentIndent === null) {
          if (record.indent <= indent) break
          contentIndent = record.indent
        } else if (record.indent < contentIndent) {
          break
        }
      }
      body.push(blank ? '' : record.raw.slice(contentIndent))
      this.pos++
    }
    let trailing = 0
    while (body.length && body[body.length - 1] === '') {
      body.pop()
      trailing++
    }
    let text
    if (!folded) {
      text = body.join('\n')
    } else {
      // Folding: a line break between two plain lines becomes a space; each empty line is
      // one newline; more-indented lines keep their line breaks.
      text = ''
      body.forEach((part, i) => {
        const previous = body[i - 1]
        if (i === 0) text = part
        else if (part === '') text += '\n'
        else if (previous === '') text += part
        else if (/^\s/.test(part) || /^\s/.test(previous)) text += '\n' + part
        else text += ' ' + part
      })
    }
    if (body.length === 0) return ''
    if (chomp === '-') return text
    if (chomp === '+') return text + '\n'.repeat(trailing + 1)
    return text + '\n'
  }

  flow (text, line) {
    let i = 0
    const fail = (what) => this.fail(line, i >= text.length
      ? `unterminated flow collection ${JSON.stringify(text)} (multi-line flow collections are not supported)`
      : `${what} in flow collection ${JSON.stringify(text)}`)
    const spaces = () => { while (text[i] === ' ') i++ }
    const item = (terminators) => {
      spaces()
      if (text[i] === '[') {
        i++
        const list = []
        spaces()
        if (text[i] === ']') { i++; return list }
        for (;;) {
          list.push(item(',]'))
          spaces()
          if (text[i] === ',') { i++; continue }
          if (text[i] === ']') { i++; return list }
          throw fail('expected "," or "]"')
        }
      }
      if (text[i] === '{') {
        i++
        const map = {}
        spaces()
        if (text[i] === '}') { i++; return map }
        for (;;) {
          const key = item(':,}')
          spaces()
          if (text[i] !== ':') throw fail('expected ":"')
          i++
          map[String(key)] = item(',}')
          spaces()
          if (text[i] === ',') { i++; continue }
          if (text[i] === '}') { i++; return map }
          throw fail('expected "," or "}"')
        }
      }
      if (text[i] === "'" || text[i] === '"') {
        const re = text[i] === "'" ? /'(?:[^']|'')*'/y : /"(?:[^"\\]|\\.)*"/y
        re.lastIndex = i
        const m = re.exec(text)
        if (!m) throw fail('unterminated string')
        i += m[0].length
        return this.scalar(m[0], line)
      }
      const start = i
      while (i < text.length && !terminators.includes(text[i]) && !(text[i] === ':' && text[i + 1] === ' ')) i++
      return this.scalar(text.slice(start, i).trim(), line)
    }
    const result = item('')
    spaces()
    if (i !== text.length) throw fail('unexpected text after the collection (multi-line flow collections are not supported)')
    return result
  }
}

module.exports = { parseYaml, YamlError }
