/* bpe.c - GPT-2 byte-level BPE: the byte table, the pre-tokenizer, ranked merges, encode and decode. */
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer_impl.h"

/* --- GPT-2's bytes_to_unicode ------------------------------------------------
 * Printable bytes (! .. ~, ¡ .. ¬, ® .. ÿ) stand for themselves; the other 68
 * take the code points 256.. in byte order.  Closed forms of that table. */

static uint32_t byte_to_cp(uint8_t b)
{
	if (b <= 0x20)
		return 256u + b;             /* 0x00..0x20 -> 256..288 */
	if (b >= 0x7f && b <= 0xa0)
		return 256u + 33 + (b - 0x7f); /* 0x7f..0xa0 -> 289..322 */
	if (b == 0xad)
		return 323;
	return b;
}

static int cp_to_byte(uint32_t cp)
{
	if ((cp >= 0x21 && cp <= 0x7e) || (cp >= 0xa1 && cp <= 0xac) || (cp >= 0xae && cp <= 0xff))
		return (int)cp;
	if (cp >= 256 && cp <= 288)
		return (int)(cp - 256);
	if (cp >= 289 && cp <= 322)
		return (int)(cp - 289 + 0x7f);
	if (cp == 323)
		return 0xad;
	return -1;
}

static size_t utf8_put(char *d, uint32_t cp)
{
	if (cp < 0x80) {
		d[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		d[0] = (char)(0xc0 | cp >> 6);
		d[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		d[0] = (char)(0xe0 | cp >> 12);
		d[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		d[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	d[0] = (char)(0xf0 | cp >> 18);
	d[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	d[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	d[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

#define CP_INVALID 0xfffffffeu

/* Decode one code point; invalid, overlong or surrogate sequences give
 * CP_INVALID and consume one byte, so any byte string can be walked. */
static uint32_t utf8_get(const uint8_t *s, size_t n, size_t *adv)
{
	uint8_t c = s[0];
	uint32_t cp, min;
	size_t k;

	*adv = 1;
	if (c < 0x80)
		return c;
	if (c >= 0xc2 && c <= 0xdf)
		k = 1, cp = c & 0x1f, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		k = 2, cp = c & 0x0f, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		k = 3, cp = c & 0x07, min = 0x10000;
	else
		return CP_INVALID;
	if (n < k + 1)
		return CP_INVALID;
	for (size_t i = 1; i <= k; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return CP_INVALID;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return CP_INVALID;
	*adv = k + 1;
	return cp;
}

/* --- Unicode classes ------------------------------------------------------------
 * \p{L} and \p{N} as sorted code point ranges, all of Unicode (the tables of
 * Python's `regex` module 2026.5.9).  Unassigned code points between two
 * members are folded into the range, which halves the table and cannot change
 * the split of real text.  Combining marks (\p{M}) are neither, as in the real
 * regex, so "e\u0301" or Devanagari vowel signs break a word there just as
 * they do in tokenizers.  Regenerate with:
 *
 *   import regex
 *   for cls in 'LN':
 *       p, cn, out, run = regex.compile(r'\p{%s}' % cls), regex.compile(r'\p{Cn}|\p{Cs}'), [], False
 *       for c in range(0x110000):
 *           if p.match(chr(c)):
 *               if run: out[-1][1] = c
 *               else: out.append([c, c]); run = True
 *           elif not cn.match(chr(c)): run = False
 *       print(', '.join('{ 0x%x, 0x%x }' % (a, b) for a, b in out))
 */

struct cp_range {
	uint32_t lo, hi;
};

static const struct cp_range letters[379] = {
	{ 0x41, 0x5a }, { 0x61, 0x7a }, { 0xaa, 0xaa }, { 0xb5, 0xb5 }, { 0xba, 0xba },
	{ 0xc0, 0xd6 }, { 0xd8, 0xf6 }, { 0xf8, 0x2c1 }, { 0x2c6, 0x2d1 }, { 0x2e0, 0x2e4 },
	{ 0x2ec, 0x2ec }, { 0x2ee, 0x2ee }, { 0x370, 0x374 }, { 0x376, 0x37d },
	{ 0x37f, 0x37f }, { 0x386, 0x386 }, { 0x388, 0x3f5 }, { 0x3f7, 0x481 },
	{ 0x48a, 0x559 }, { 0x560, 0x588 }, { 0x5d0, 0x5f2 }, { 0x620, 0x64a },
	{ 0x66e, 0x66f }, { 0x671, 0x6d3 }, { 0x6d5, 0x6d5 }, { 0x6e5, 0x6e6 },
	{ 0x6ee, 0x6ef }, { 0x6fa, 0x6fc }, { 0x6ff, 0x6ff }, { 0x710, 0x710 },
	{ 0x712, 0x72f }, { 0x74d, 0x7a5 }, { 0x7b1, 0x7b1 }, { 0x7ca, 0x7ea },
	{ 0x7f4, 0x7f5 }, { 0x7fa, 0x7fa }, { 0x800, 0x815 }, { 0x81a, 0x81a },
	{ 0x824, 0x824 }, { 0x828, 0x828 }, { 0x840, 0x858 }, { 0x860, 0x887 },
	{ 0x889, 0x88f }, { 0x8a0, 0x8c9 }, { 0x904, 0x939 }, { 0x93d, 0x93d },
	{ 0x950, 0x950 }, { 0x958, 0x961 }, { 0x971, 0x980 }, { 0x985, 0x9b9 },
	{ 0x9bd, 0x9bd }, { 0x9ce, 0x9ce }, { 0x9dc, 0x9e1 }, { 0x9f0, 0x9f1 },
	{ 0x9fc, 0x9fc }, { 0xa05, 0xa39 }, { 0xa59, 0xa5e }, { 0xa72, 0xa74 },
	{ 0xa85, 0xab9 }, { 0xabd, 0xabd }, { 0xad0, 0xae1 }, { 0xaf9, 0xaf9 },
	{ 0xb05, 0xb39 }, { 0xb3d, 0xb3d }, { 0xb5c, 0xb61 }, { 0xb71, 0xb71 },
	{ 0xb83, 0xbb9 }, { 0xbd0, 0xbd0 }, { 0xc05, 0xc39 }, { 0xc3d, 0xc3d },
	{ 0xc58, 0xc61 }, { 0xc80, 0xc80 }, { 0xc85, 0xcb9 }, { 0xcbd, 0xcbd },
	{ 0xcdc, 0xce1 }, { 0xcf1, 0xcf2 }, { 0xd04, 0xd3a }, { 0xd3d, 0xd3d },
	{ 0xd4e, 0xd4e }, { 0xd54, 0xd56 }, { 0xd5f, 0xd61 }, { 0xd7a, 0xd7f },
	{ 0xd85, 0xdc6 }, { 0xe01, 0xe30 }, { 0xe32, 0xe33 }, { 0xe40, 0xe46 },
	{ 0xe81, 0xeb0 }, { 0xeb2, 0xeb3 }, { 0xebd, 0xec6 }, { 0xedc, 0xf00 },
	{ 0xf40, 0xf6c }, { 0xf88, 0xf8c }, { 0x1000, 0x102a }, { 0x103f, 0x103f },
	{ 0x1050, 0x1055 }, { 0x105a, 0x105d }, { 0x1061, 0x1061 }, { 0x1065, 0x1066 },
	{ 0x106e, 0x1070 }, { 0x1075, 0x1081 }, { 0x108e, 0x108e }, { 0x10a0, 0x10fa },
	{ 0x10fc, 0x135a }, { 0x1380, 0x138f }, { 0x13a0, 0x13fd }, { 0x1401, 0x166c },
	{ 0x166f, 0x167f }, { 0x1681, 0x169a }, { 0x16a0, 0x16ea }, { 0x16f1, 0x1711 },
	{ 0x171f, 0x1731 }, { 0x1740, 0x1751 }, { 0x1760, 0x1770 }, { 0x1780, 0x17b3 },
	{ 0x17d7, 0x17d7 }, { 0x17dc, 0x17dc }, { 0x1820, 0x1884 }, { 0x1887, 0x18a8 },
	{ 0x18aa, 0x191e }, { 0x1950, 0x19c9 }, { 0x1a00, 0x1a16 }, { 0x1a20, 0x1a54 },
	{ 0x1aa7, 0x1aa7 }, { 0x1b05, 0x1b33 }, { 0x1b45, 0x1b4c }, { 0x1b83, 0x1ba0 },
	{ 0x1bae, 0x1baf }, { 0x1bba, 0x1be5 }, { 0x1c00, 0x1c23 }, { 0x1c4d, 0x1c4f },
	{ 0x1c5a, 0x1c7d }, { 0x1c80, 0x1cbf }, { 0x1ce9, 0x1cec }, { 0x1cee, 0x1cf3 },
	{ 0x1cf5, 0x1cf6 }, { 0x1cfa, 0x1dbf }, { 0x1e00, 0x1fbc }, { 0x1fbe, 0x1fbe },
	{ 0x1fc2, 0x1fcc }, { 0x1fd0, 0x1fdb }, { 0x1fe0, 0x1fec }, { 0x1ff2, 0x1ffc },
	{ 0x2071, 0x2071 }, { 0x207f, 0x207f }, { 0x2090, 0x209c }, { 0x2102, 0x2102 },
	{ 0x2107, 0x2107 }, { 0x210a, 0x2113 }, { 0x2115, 0x2115 }, { 0x2119, 0x211d },
	{ 0x2124, 0x2124 }, { 0x2126, 0x2126 }, { 0x2128, 0x2128 }, { 0x212a, 0x212d },
	{ 0x212f, 0x2139 }, { 0x213c, 0x213f }, { 0x2145, 0x2149 }, { 0x214e, 0x214e },
	{ 0x2183, 0x2184 }, { 0x2c00, 0x2ce4 }, { 0x2ceb, 0x2cee }, { 0x2cf2, 0x2cf3 },
	{ 0x2d00, 0x2d6f }, { 0x2d80, 0x2dde }, { 0x2e2f, 0x2e2f }, { 0x3005, 0x3006 },
	{ 0x3031, 0x3035 }, { 0x303b, 0x303c }, { 0x3041, 0x3096 }, { 0x309d, 0x309f },
	{ 0x30a1, 0x30fa }, { 0x30fc, 0x318e }, { 0x31a0, 0x31bf }, { 0x31f0, 0x31ff },
	{ 0x3400, 0x4dbf }, { 0x4e00, 0xa48c }, { 0xa4d0, 0xa4fd }, { 0xa500, 0xa60c },
	{ 0xa610, 0xa61f }, { 0xa62a, 0xa66e }, { 0xa67f, 0xa69d }, { 0xa6a0, 0xa6e5 },
	{ 0xa717, 0xa71f }, { 0xa722, 0xa788 }, { 0xa78b, 0xa801 }, { 0xa803, 0xa805 },
	{ 0xa807, 0xa80a }, { 0xa80c, 0xa822 }, { 0xa840, 0xa873 }, { 0xa882, 0xa8b3 },
	{ 0xa8f2, 0xa8f7 }, { 0xa8fb, 0xa8fb }, { 0xa8fd, 0xa8fe }, { 0xa90a, 0xa925 },
	{ 0xa930, 0xa946 }, { 0xa960, 0xa97c }, { 0xa984, 0xa9b2 }, { 0xa9cf, 0xa9cf },
	{ 0xa9e0, 0xa9e4 }, { 0xa9e6, 0xa9ef }, { 0xa9fa, 0xaa28 }, { 0xaa40, 0xaa42 },
	{ 0xaa44, 0xaa4b }, { 0xaa60, 0xaa76 }, { 0xaa7a, 0xaa7a }, { 0xaa7e, 0xaaaf },
	{ 0xaab1, 0xaab1 }, { 0xaab5, 0xaab6 }, { 0xaab9, 0xaabd }, { 0xaac0, 0xaac0 },
	{ 0xaac2, 0xaadd }, { 0xaae0, 0xaaea }, { 0xaaf2, 0xaaf4 }, { 0xab01, 0xab5a },
	{ 0xab5c, 0xab69 }, { 0xab70, 0xabe2 }, { 0xac00, 0xd7fb }, { 0xf900, 0xfb1d },
	{ 0xfb1f, 0xfb28 }, { 0xfb2a, 0xfbb1 }, { 0xfbd3, 0xfd3d }, { 0xfd50, 0xfd8f },
	{ 0xfd92, 0xfdc7 }, { 0xfdf0, 0xfdfb }, { 0xfe70, 0xfefc }, { 0xff21, 0xff3a },
	{ 0xff41, 0xff5a }, { 0xff66, 0xffdc }, { 0x10000, 0x100fa }, { 0x10280, 0x102d0 },
	{ 0x10300, 0x1031f }, { 0x1032d, 0x10340 }, { 0x10342, 0x10349 }, { 0x10350, 0x10375 },
	{ 0x10380, 0x1039d }, { 0x103a0, 0x103cf }, { 0x10400, 0x1049d }, { 0x104b0, 0x10563 },
	{ 0x10570, 0x10855 }, { 0x10860, 0x10876 }, { 0x10880, 0x1089e }, { 0x108e0, 0x108f5 },
	{ 0x10900, 0x10915 }, { 0x10920, 0x10939 }, { 0x10940, 0x109b7 }, { 0x109be, 0x109bf },
	{ 0x10a00, 0x10a00 }, { 0x10a10, 0x10a35 }, { 0x10a60, 0x10a7c }, { 0x10a80, 0x10a9c },
	{ 0x10ac0, 0x10ac7 }, { 0x10ac9, 0x10ae4 }, { 0x10b00, 0x10b35 }, { 0x10b40, 0x10b55 },
	{ 0x10b60, 0x10b72 }, { 0x10b80, 0x10b91 }, { 0x10c00, 0x10cf2 }, { 0x10d00, 0x10d23 },
	{ 0x10d4a, 0x10d65 }, { 0x10d6f, 0x10d85 }, { 0x10e80, 0x10ea9 }, { 0x10eb0, 0x10ec7 },
	{ 0x10f00, 0x10f1c }, { 0x10f27, 0x10f45 }, { 0x10f70, 0x10f81 }, { 0x10fb0, 0x10fc4 },
	{ 0x10fe0, 0x10ff6 }, { 0x11003, 0x11037 }, { 0x11071, 0x11072 }, { 0x11075, 0x11075 },
	{ 0x11083, 0x110af }, { 0x110d0, 0x110e8 }, { 0x11103, 0x11126 }, { 0x11144, 0x11144 },
	{ 0x11147, 0x11172 }, { 0x11176, 0x11176 }, { 0x11183, 0x111b2 }, { 0x111c1, 0x111c4 },
	{ 0x111da, 0x111da }, { 0x111dc, 0x111dc }, { 0x11200, 0x1122b }, { 0x1123f, 0x11240 },
	{ 0x11280, 0x112a8 }, { 0x112b0, 0x112de }, { 0x11305, 0x11339 }, { 0x1133d, 0x1133d },
	{ 0x11350, 0x11350 }, { 0x1135d, 0x11361 }, { 0x11380, 0x113b7 }, { 0x113d1, 0x113d1 },
	{ 0x113d3, 0x113d3 }, { 0x11400, 0x11434 }, { 0x11447, 0x1144a }, { 0x1145f, 0x114af },
	{ 0x114c4, 0x114c5 }, { 0x114c7, 0x114c7 }, { 0x11580, 0x115ae }, { 0x115d8, 0x115db },
	{ 0x11600, 0x1162f }, { 0x11644, 0x11644 }, { 0x11680, 0x116aa }, { 0x116b8, 0x116b8 },
	{ 0x11700, 0x1171a }, { 0x11740, 0x1182b }, { 0x118a0, 0x118df }, { 0x118ff, 0x1192f },
	{ 0x1193f, 0x1193f }, { 0x11941, 0x11941 }, { 0x119a0, 0x119d0 }, { 0x119e1, 0x119e1 },
	{ 0x119e3, 0x119e3 }, { 0x11a00, 0x11a00 }, { 0x11a0b, 0x11a32 }, { 0x11a3a, 0x11a3a },
	{ 0x11a50, 0x11a50 }, { 0x11a5c, 0x11a89 }, { 0x11a9d, 0x11a9d }, { 0x11ab0, 0x11af8 },
	{ 0x11bc0, 0x11be0 }, { 0x11c00, 0x11c2e }, { 0x11c40, 0x11c40 }, { 0x11c72, 0x11c8f },
	{ 0x11d00, 0x11d30 }, { 0x11d46, 0x11d46 }, { 0x11d60, 0x11d89 }, { 0x11d98, 0x11d98 },
	{ 0x11db0, 0x11ddb }, { 0x11ee0, 0x11ef2 }, { 0x11f02, 0x11f02 }, { 0x11f04, 0x11f33 },
	{ 0x11fb0, 0x11fb0 }, { 0x12000, 0x12399 }, { 0x12480, 0x12ff0 }, { 0x13000, 0x1342f },
	{ 0x13441, 0x13446 }, { 0x13460, 0x1611d }, { 0x16800, 0x16a5e }, { 0x16a70, 0x16abe },
	{ 0x16ad0, 0x16aed }, { 0x16b00, 0x16b2f }, { 0x16b40, 0x16b43 }, { 0x16b63, 0x16d6c },
	{ 0x16e40, 0x16e7f }, { 0x16ea0, 0x16f4a }, { 0x16f50, 0x16f50 }, { 0x16f93, 0x16fe1 },
	{ 0x16fe3, 0x16fe3 }, { 0x16ff2, 0x16ff3 }, { 0x17000, 0x1bc99 }, { 0x1d400, 0x1d6c0 },
	{ 0x1d6c2, 0x1d6da }, { 0x1d6dc, 0x1d6fa }, { 0x1d6fc, 0x1d714 }, { 0x1d716, 0x1d734 },
	{ 0x1d736, 0x1d74e }, { 0x1d750, 0x1d76e }, { 0x1d770, 0x1d788 }, { 0x1d78a, 0x1d7a8 },
	{ 0x1d7aa, 0x1d7c2 }, { 0x1d7c4, 0x1d7cb }, { 0x1df00, 0x1df2a }, { 0x1e030, 0x1e06d },
	{ 0x1e100, 0x1e12c }, { 0x1e137, 0x1e13d }, { 0x1e14e, 0x1e14e }, { 0x1e290, 0x1e2ad },
	{ 0x1e2c0, 0x1e2eb }, { 0x1e4d0, 0x1e4eb }, { 0x1e5d0, 0x1e5ed }, { 0x1e5f0, 0x1e5f0 },
	{ 0x1e6c0, 0x1e6e2 }, { 0x1e6e4, 0x1e6e5 }, { 0x1e6e7, 0x1e6ed }, { 0x1e6f0, 0x1e6f4 },
	{ 0x1e6fe, 0x1e8c4 }, { 0x1e900, 0x1e943 }, { 0x1e94b, 0x1e94b }, { 0x1ee00, 0x1eebb },
	{ 0x20000, 0x33479 },
};
static const struct cp_range numbers[138] = {
	{ 0x30, 0x39 }, { 0xb2, 0xb3 }, { 0xb9, 0xb9 }, { 0xbc, 0xbe }, { 0x660, 0x669 },
	{ 0x6f0, 0x6f9 }, { 0x7c0, 0x7c9 }, { 0x966, 0x96f }, { 0x9e6, 0x9ef },
	{ 0x9f4, 0x9f9 }, { 0xa66, 0xa6f }, { 0xae6, 0xaef }, { 0xb66, 0xb6f },
	{ 0xb72, 0xb77 }, { 0xbe6, 0xbf2 }, { 0xc66, 0xc6f }, { 0xc78, 0xc7e },
	{ 0xce6, 0xcef }, { 0xd58, 0xd5e }, { 0xd66, 0xd78 }, { 0xde6, 0xdef },
	{ 0xe50, 0xe59 }, { 0xed0, 0xed9 }, { 0xf20, 0xf33 }, { 0x1040, 0x1049 },
	{ 0x1090, 0x1099 }, { 0x1369, 0x137c }, { 0x16ee, 0x16f0 }, { 0x17e0, 0x17f9 },
	{ 0x1810, 0x1819 }, { 0x1946, 0x194f }, { 0x19d0, 0x19da }, { 0x1a80, 0x1a99 },
	{ 0x1b50, 0x1b59 }, { 0x1bb0, 0x1bb9 }, { 0x1c40, 0x1c49 }, { 0x1c50, 0x1c59 },
	{ 0x2070, 0x2070 }, { 0x2074, 0x2079 }, { 0x2080, 0x2089 }, { 0x2150, 0x2182 },
	{ 0x2185, 0x2189 }, { 0x2460, 0x249b }, { 0x24ea, 0x24ff }, { 0x2776, 0x2793 },
	{ 0x2cfd, 0x2cfd }, { 0x3007, 0x3007 }, { 0x3021, 0x3029 }, { 0x3038, 0x303a },
	{ 0x3192, 0x3195 }, { 0x3220, 0x3229 }, { 0x3248, 0x324f }, { 0x3251, 0x325f },
	{ 0x3280, 0x3289 }, { 0x32b1, 0x32bf }, { 0xa620, 0xa629 }, { 0xa6e6, 0xa6ef },
	{ 0xa830, 0xa835 }, { 0xa8d0, 0xa8d9 }, { 0xa900, 0xa909 }, { 0xa9d0, 0xa9d9 },
	{ 0xa9f0, 0xa9f9 }, { 0xaa50, 0xaa59 }, { 0xabf0, 0xabf9 }, { 0xff10, 0xff19 },
	{ 0x10107, 0x10133 }, { 0x10140, 0x10178 }, { 0x1018a, 0x1018b }, { 0x102e1, 0x102fb },
	{ 0x10320, 0x10323 }, { 0x10341, 0x10341 }, { 0x1034a, 0x1034a }, { 0x103d1, 0x103d5 },
	{ 0x104a0, 0x104a9 }, { 0x10858, 0x1085f }, { 0x10879, 0x1087f }, { 0x108a7, 0x108af },
	{ 0x108fb, 0x108ff }, { 0x10916, 0x1091b }, { 0x109bc, 0x109bd }, { 0x109c0, 0x109ff },
	{ 0x10a40, 0x10a48 }, { 0x10a7d, 0x10a7e }, { 0x10a9d, 0x10a9f }, { 0x10aeb, 0x10aef },
	{ 0x10b58, 0x10b5f }, { 0x10b78, 0x10b7f }, { 0x10ba9, 0x10baf }, { 0x10cfa, 0x10cff },
	{ 0x10d30, 0x10d49 }, { 0x10e60, 0x10e7e }, { 0x10f1d, 0x10f26 }, { 0x10f51, 0x10f54 },
	{ 0x10fc5, 0x10fcb }, { 0x11052, 0x1106f }, { 0x110f0, 0x110f9 }, { 0x11136, 0x1113f },
	{ 0x111d0, 0x111d9 }, { 0x111e1, 0x111f4 }, { 0x112f0, 0x112f9 }, { 0x11450, 0x11459 },
	{ 0x114d0, 0x114d9 }, { 0x11650, 0x11659 }, { 0x116c0, 0x116e3 }, { 0x11730, 0x1173b },
	{ 0x118e0, 0x118f2 }, { 0x11950, 0x11959 }, { 0x11bf0, 0x11bf9 }, { 0x11c50, 0x11c6c },
	{ 0x11d50, 0x11d59 }, { 0x11da0, 0x11da9 }, { 0x11de0, 0x11de9 }, { 0x11f50, 0x11f59 },
	{ 0x11fc0, 0x11fd4 }, { 0x12400, 0x1246e }, { 0x16130, 0x16139 }, { 0x16a60, 0x16a69 },
	{ 0x16ac0, 0x16ac9 }, { 0x16b50, 0x16b61 }, { 0x16d70, 0x16d79 }, { 0x16e80, 0x16e96 },
	{ 0x16ff4, 0x16ff6 }, { 0x1ccf0, 0x1ccf9 }, { 0x1d2c0, 0x1d2f3 }, { 0x1d360, 0x1d378 },
	{ 0x1d7ce, 0x1d7ff }, { 0x1e140, 0x1e149 }, { 0x1e2f0, 0x1e2f9 }, { 0x1e4f0, 0x1e4f9 },
	{ 0x1e5f1, 0x1e5fa }, { 0x1e8c7, 0x1e8cf }, { 0x1e950, 0x1e959 }, { 0x1ec71, 0x1ecab },
	{ 0x1ecad, 0x1ecaf }, { 0x1ecb1, 0x1ed2d }, { 0x1ed2f, 0x1ed3d }, { 0x1f100, 0x1f10c },
	{ 0x1fbf0, 0x1fbf9 },
};

enum cp_class {
	CL_END,   /* past the range being split: lookahead sees nothing */
	CL_LETTER,
	CL_NUMBER,
	CL_SPACE,
	CL_OTHER,
};

static bool in_ranges(const struct cp_range *r, size_t n, uint32_t cp)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (cp < r[mid].lo)
			hi = mid;
		else if (cp > r[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

static enum cp_class classify(uint32_t cp)
{
	if (cp < 0x80) {
		if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')
			return CL_LETTER;
		if (cp >= '0' && cp <= '9')
			return CL_NUMBER;
		if (cp == ' ' || (cp >= 0x09 && cp <= 0x0d))
			return CL_SPACE;
		return CL_OTHER;
	}
	/* Oniguruma's \s, which tokenizers uses */
	if (cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
	    cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000)
		return CL_SPACE;
	if (in_ranges(letters, sizeof(letters) / sizeof(letters[0]), cp))
		return CL_LETTER;
	if (in_ranges(numbers, sizeof(numbers) / sizeof(numbers[0]), cp))
		return CL_NUMBER;
	return CL_OTHER;
}

/* --- the pre-tokenizer ---------------------------------------------------------- */

struct cps {
	uint32_t *cp;
	uint32_t *off; /* byte offset of each code point; off[n] = length */
	uint8_t *cls;
	size_t n;
};

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * over code points [b, e), by hand as llama.cpp does; e is a hard end, so
 * (?!\S) succeeds there as it does at the end of a Digits split in tokenizers. */
static enum djn_status split_gpt2(const struct cps *c, size_t b, size_t e, const char *text,
				  djn_tok_piece_fn fn, void *ctx)
{
#define CLS(i) ((i) < e ? c->cls[i] : CL_END)
	size_t pos = b;

	while (pos < e) {
		size_t start = pos, n_sp = 0;
		uint32_t ch = c->cp[pos];
		enum cp_class k;
		enum djn_status st;

		if (ch == '\'' && pos + 1 < e) {
			uint32_t c1 = c->cp[pos + 1], c2 = pos + 2 < e ? c->cp[pos + 2] : 0;

			if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
				pos += 2;
				goto emit;
			}
			if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') ||
			    (c1 == 'l' && c2 == 'l')) {
				pos += 3;
				goto emit;
			}
		}
		k = ch == ' ' ? CLS(pos + 1) : c->cls[pos];
		if (k == CL_LETTER || k == CL_NUMBER || k == CL_OTHER) {
			pos += ch == ' ';
			while (CLS(pos) == k)
				pos++;
			goto emit;
		}
		while (CLS(pos + n_sp) == CL_SPACE)
			n_sp++;
		if (n_sp > 1 && pos + n_sp < e)
			pos += n_sp - 1; /* \s+(?!\S): leave the last space to the word after */
		else if (n_sp > 0)
			pos += n_sp;
		else
			pos++;
emit:
		st = fn(ctx, text + c->off[start], c->off[pos] - c->off[start]);
		if (st)
			return st;
	}
	return DJN_OK;
#undef CLS
}

enum djn_status djn_tok_bpe_pretokenize(enum djn_tok_pre pre, const char *text, size_t len,
					djn_tok_piece_fn fn, void *ctx)
{
	struct cps c;
	enum djn_status st = DJN_OK;
	size_t i = 0, run;

	if (!len)
		return DJN_OK;
	c.cp = djn_xmalloc(len * sizeof(*c.cp));
	c.off = djn_xmalloc((len + 1) * sizeof(*c.off));
	c.cls = djn_xmalloc(len);
	c.n = 0;
	while (i < len) {
		size_t adv;
		uint32_t cp = utf8_get((const uint8_t *)text + i, len - i, &adv);

		c.cp[c.n] = cp;
		c.off[c.n] = (uint32_t)i;
		c.cls[c.n] = (uint8_t)(cp == CP_INVALID ? CL_OTHER : classify(cp));
		c.n++;
		i += adv;
	}
	c.off[c.n] = (uint32_t)len;
	if (pre == DJN_TOK_PRE_GPT2) {
		st = split_gpt2(&c, 0, c.n, text, fn, ctx);
		goto out_free;
	}
	/* smollm: every \p{N} is a piece of its own (tokenizers' Digits with
	 * individual_digits); the runs between go through the GPT-2 regex */
	for (i = 0; i < c.n && !st; i = run) {
		if (c.cls[i] == CL_NUMBER) {
			run = i + 1;
			st = fn(ctx, text + c.off[i], c.off[i + 1] - c.off[i]);
			continue;
		}
		for (run = i; run < c.n && c.cls[run] != CL_NUMBER; run++)
			;
		st = split_gpt2(&c, i, run, text, fn, ctx);
	}
out_free:
	free(c.cp);
	free(c.off);
	free(c.cls);
	return st;
}

/* --- ranked merges ---------------------------------------------------------------- */

static uint32_t hash_pair(uint64_t key)
{
	key ^= key >> 33; /* murmur3's finalizer: ids are small and dense */
	key *= 0xff51afd7ed558ccdull;
	key ^= key >> 33;
	key *= 0xc4ceb9fe1a85ec53ull;
	key ^= key >> 33;
	return (uint32_t)key;
}

static uint64_t pair_key(int32_t a, int32_t b)
{
	return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
}

static const struct djn_tok_pair *pair_find(const struct djn_tokenizer *tok, int32_t a, int32_t b)
{
	uint64_t key = pair_key(a, b);

	if (!tok->pairs.slots)
		return NULL;
	for (uint32_t i = hash_pair(key) & tok->pairs.mask;; i = (i + 1) & tok->pairs.mask) {
		const struct djn_tok_pair *p = &tok->pairs.slots[i];

		if (p->key == key)
			return p;
		if (!p->key)
			return NULL;
	}
}

/* Insert unless present: a repeated merge keeps its first (best) rank. */
static void pair_add(struct djn_tokenizer *tok, int32_t a, int32_t b, int32_t rank,
		     int32_t merged)
{
	uint64_t key = pair_key(a, b);

	for (uint32_t i = hash_pair(key) & tok->pairs.mask;; i = (i + 1) & tok->pairs.mask) {
		struct djn_tok_pair *p = &tok->pairs.slots[i];

		if (p->key == key)
			return;
		if (!p->key) {
			p->key = key;
			p->rank = rank;
			p->merged = merged;
			return;
		}
	}
}

static bool bpe_pair(const struct djn_tokenizer *tok, void *ctx, int32_t a, int32_t b,
		     int32_t *merged, double *prio)
{
	const struct djn_tok_pair *p;

	if (a < 0 || b < 0)
		return false;
	p = pair_find(tok, a, b);
	if (!p)
		return false;
	*merged = p->merged;
	*prio = -(double)p->rank; /* lowest rank first */
	return true;
}

/* --- construction ------------------------------------------------------------------- */

/* What each token prints as: CONTROL nothing (llama.cpp prints special
 * tokens only when asked), USER_DEFINED its text as written, <0xXX> its
 * byte, anything else its code points mapped back through the byte table
 * (a code point outside the table, possible in a hand-made vocabulary,
 * stays as its UTF-8). */
static void bpe_build_decoded(struct djn_tokenizer *tok)
{
	for (int id = 0; id < tok->n_vocab; id++) {
		const uint8_t *s = (const uint8_t *)djn_tok_str(tok, id);
		char *d = tok->dtext + tok->off[id];
		uint32_t n = tok->len[id], k = 0;
		int b;

		switch (tok->types[id]) {
		case DJN_TOKT_CONTROL:
			break;
		case DJN_TOKT_USER_DEFINED:
			memcpy(d, s, n);
			k = n;
			break;
		case DJN_TOKT_BYTE:
			b = djn_tok_byte_piece((const char *)s, n);
			if (b >= 0) {
				d[k++] = (char)b;
				break;
			}
			/* fall through */
		default:
			for (size_t i = 0, adv; i < n; i += adv) {
				uint32_t cp = utf8_get(s + i, n - i, &adv);

				b = cp == CP_INVALID ? -1 : cp_to_byte(cp);
				if (b >= 0) {
					d[k++] = (char)b;
				} else {
					memcpy(d + k, s + i, adv);
					k += (uint32_t)adv;
				}
			}
		}
		tok->dlen[id] = k;
	}
}

struct special {
	int32_t id;
	uint32_t len;
};

static int special_cmp(const void *pa, const void *pb)
{
	const struct special *a = pa, *b = pb;

	if (a->len != b->len)
		return a->len > b->len ? -1 : 1; /* longest first: the longest match wins */
	return a->id < b->id ? -1 : a->id > b->id;
}

static void collect_specials(struct djn_tokenizer *tok)
{
	struct special *sp = djn_xmalloc(sizeof(*sp) * (size_t)tok->n_vocab);
	int n = 0;

	for (int id = 0; id < tok->n_vocab; id++) {
		if ((tok->types[id] == DJN_TOKT_CONTROL || tok->types[id] == DJN_TOKT_USER_DEFINED) &&
		    tok->len[id] > 0)
			sp[n++] = (struct special){ id, tok->len[id] };
	}
	qsort(sp, (size_t)n, sizeof(*sp), special_cmp);
	tok->specials = djn_xmalloc(sizeof(*tok->specials) * (size_t)(n ? n : 1));
	for (int i = 0; i < n; i++) {
		uint8_t c = (uint8_t)djn_tok_str(tok, sp[i].id)[0];

		tok->specials[i] = sp[i].id;
		tok->special_first[c >> 3] |= (uint8_t)(1u << (c & 7));
	}
	tok->n_specials = n;
	free(sp);
}

static bool parse_pre(const char *pre, enum djn_tok_pre *out)
{
	/* llama.cpp's groups of tokenizer.ggml.pre names sharing one regex set */
	static const char *const gpt2[] = { "gpt2", "gpt-2", "mpt", "olmo", "jais" };
	static const char *const smollm[] = { "smollm", "starcoder", "refact", "command-r",
					      "codeshell", "exaone", "minerva-7b" };

	if (!pre) {
		*out = DJN_TOK_PRE_GPT2;
		return true;
	}
	for (size_t i = 0; i < sizeof(gpt2) / sizeof(gpt2[0]); i++) {
		if (!strcmp(pre, gpt2[i])) {
			*out = DJN_TOK_PRE_GPT2;
			return true;
		}
	}
	for (size_t i = 0; i < sizeof(smollm) / sizeof(smollm[0]); i++) {
		if (!strcmp(pre, smollm[i])) {
			*out = DJN_TOK_PRE_SMOLLM;
			return true;
		}
	}
	return false;
}

struct djn_tokenizer *djn_tok_bpe_build(const char *what, int n_vocab,
					const char *const *pieces, const uint32_t *lens,
					const int32_t *types, int n_merges,
					const char *const *left, const uint32_t *left_lens,
					const char *const *right, const uint32_t *right_lens,
					int bos_id, int eos_id, const char *pre,
					struct djn_err *err)
{
	struct djn_tokenizer *tok;
	enum djn_tok_pre kind;
	char *buf;
	uint32_t size;

	if (!parse_pre(pre, &kind)) {
		djn_err_set(err, DJN_ERR_UNSUPPORTED,
			    "%s: pre-tokenizer '%s' is not supported (gpt2 or smollm families)",
			    what, pre);
		return NULL;
	}
	if (n_merges < 0 || n_merges > DJN_TOK_MAX_VOCAB || (n_merges && (!left || !right))) {
		djn_err_set(err, DJN_ERR_INVALID, "%s: %d merges given, must be in 0..%d", what,
			    n_merges, DJN_TOK_MAX_VOCAB);
		return NULL;
	}
	tok = djn_tok_alloc(DJN_TOK_BPE, what, n_vocab, pieces, lens, types, bos_id, eos_id, err);
	if (!tok)
		return NULL;
	tok->pre = kind;
	tok->add_bos = false;
	for (int b = 0; b < 256; b++) {
		char s[4];

		tok->byte_id[b] = djn_tok_find(tok, s, utf8_put(s, byte_to_cp((uint8_t)b)));
	}

	/* A merge whose halves or result are not in the vocabulary can never
	 * fire (encode works on ids), so it is skipped rather than refused:
	 * tokenizers refuses such files, llama.cpp ignores the entry. */
	size = 16;
	while (size < 2 * (uint32_t)n_merges)
		size <<= 1;
	tok->pairs.slots = djn_xcalloc(size, sizeof(*tok->pairs.slots));
	tok->pairs.mask = size - 1;
	buf = djn_xmalloc(2 * (size_t)tok->max_len + 1);
	for (int r = 0; r < n_merges; r++) {
		uint32_t la = left_lens[r], lb = right_lens[r];
		int a, b, m;

		if (!left[r] || !right[r] || la > tok->max_len || lb > tok->max_len)
			continue;
		a = djn_tok_find(tok, left[r], la);
		b = djn_tok_find(tok, right[r], lb);
		if (a < 0 || b < 0)
			continue;
		memcpy(buf, left[r], la);
		memcpy(buf + la, right[r], lb);
		m = djn_tok_find(tok, buf, la + lb);
		if (m >= 0)
			pair_add(tok, a, b, r, m);
	}
	free(buf);
	collect_specials(tok);
	bpe_build_decoded(tok);
	return tok;
}

struct djn_tokenizer *djn_tok_new_bpe(int n_vocab, const char *const *pieces,
				      const uint32_t *lens, const int32_t *types,
				      int n_merges, const char *const *merges,
				      const uint32_t *merge_lens, int bos_id, int eos_id,
				      const char *pre, struct djn_err *err)
{
	const char **left = NULL, **right = NULL;
	uint32_t *llen = NULL, *rlen = NULL;
	struct djn_tokenizer *tok = NULL;

	if (n_merges < 0 || n_merges > DJN_TOK_MAX_VOCAB || (n_merges && !merges)) {
		djn_err_set(err, DJN_ERR_INVALID, "bpe vocabulary: %d merges given, must be in 0..%d",
			    n_merges, DJN_TOK_MAX_VOCAB);
		return NULL;
	}
	if (n_merges) {
		left = djn_xmalloc(sizeof(*left) * (size_t)n_merges);
		right = djn_xmalloc(sizeof(*right) * (size_t)n_merges);
		llen = djn_xmalloc(sizeof(*llen) * (size_t)n_merges);
		rlen = djn_xmalloc(sizeof(*rlen) * (size_t)n_merges);
	}
	for (int r = 0; r < n_merges; r++) {
		const char *m = merges[r], *sp;
		size_t n;

		if (!m) {
			djn_err_set(err, DJN_ERR_INVALID, "bpe vocabulary: merge %d is missing", r);
			goto out_free;
		}
		n = merge_lens ? merge_lens[r] : strlen(m);
		/* split at the first space after the first byte, as llama.cpp
		 * does, so a left half may itself be a lone space */
		sp = n > 1 ? memchr(m + 1, ' ', n - 1) : NULL;
		if (!sp) {
			djn_err_set(err, DJN_ERR_INVALID,
				    "bpe vocabulary: merge %d '%.*s' is not two pieces split by a space",
				    r, (int)(n < 64 ? n : 64), m);
			goto out_free;
		}
		left[r] = m;
		llen[r] = (uint32_t)(sp - m);
		right[r] = sp + 1;
		rlen[r] = (uint32_t)(n - (size_t)(sp - m) - 1);
	}
	tok = djn_tok_bpe_build("bpe vocabulary", n_vocab, pieces, lens, types, n_merges, left,
				llen, right, rlen, bos_id, eos_id, pre, err);
out_free:
	free(left);
	free(right);
	free(llen);
	free(rlen);
	return tok;
}

/* --- encode -------------------------------------------------------------------------- */

struct bpe_run {
	const struct djn_tokenizer *tok;
	struct djn_tok_merger m;
	int32_t *ids;
	int n;
	const char *text; /* for offsets in messages */
	struct djn_err *err;
};

/* One pre-token: a symbol per byte (each byte is one printable code point of
 * the byte table), then merges by rank.  A byte with no piece takes part in
 * no merge and comes out as the unknown token. */
static enum djn_status bpe_word(void *ctx, const char *s, size_t len)
{
	struct bpe_run *r = ctx;
	const struct djn_tokenizer *tok = r->tok;
	int32_t *w = r->ids + r->n;
	int n;

	for (size_t i = 0; i < len; i++) {
		w[i] = tok->byte_id[(uint8_t)s[i]];
		if (w[i] < 0 && tok->unk < 0)
			return djn_err_set(r->err, DJN_ERR_INVALID,
					   "cannot encode byte 0x%02x at offset %zu: the vocabulary "
					   "has no piece for it and no unknown token",
					   (uint8_t)s[i], (size_t)(s - r->text) + i);
	}
	n = djn_tok_merge(tok, &r->m, w, (int)len, bpe_pair, NULL);
	for (int i = 0; i < n; i++) {
		if (w[i] < 0)
			w[i] = tok->unk;
	}
	r->n += n;
	return DJN_OK;
}

/* The longest special token at text[i], or -1. */
static int match_special(const struct djn_tokenizer *tok, const char *text, size_t len, size_t i)
{
	uint8_t c = (uint8_t)text[i];

	if (!(tok->special_first[c >> 3] & (1u << (c & 7))))
		return -1;
	for (int k = 0; k < tok->n_specials; k++) {
		int id = tok->specials[k];

		if (tok->len[id] <= len - i && !memcmp(text + i, djn_tok_str(tok, id), tok->len[id]))
			return id;
	}
	return -1;
}

/* Special tokens are cut out first, scanning left to right and taking the
 * longest at each position (llama.cpp instead cuts the longest token
 * everywhere first; the two differ only for overlapping specials). */
enum djn_status djn_tok_bpe_encode(const struct djn_tokenizer *tok, const char *text,
				   size_t len, int32_t *ids, int *n_ids, struct djn_err *err)
{
	struct bpe_run r = { .tok = tok, .ids = ids, .text = text, .err = err };
	enum djn_status st = DJN_OK;
	size_t start = 0;

	for (size_t i = 0; i <= len && !st; i++) {
		int sp = i < len && tok->n_specials ? match_special(tok, text, len, i) : -1;

		if (i < len && sp < 0)
			continue;
		st = djn_tok_bpe_pretokenize(tok->pre, text + start, i - start, bpe_word, &r);
		if (!st && sp >= 0) {
			r.ids[r.n++] = sp;
			i += tok->len[sp] - 1;
			start = i + 1;
		}
	}
	djn_tok_merger_release(&r.m);
	*n_ids = r.n;
	return st;
}
