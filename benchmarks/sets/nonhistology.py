"""A varied set of images that are not lung H&E tiles, built offline from what this machine has.

Used only to measure the out-of-distribution check, never to fit it. Categories:
photographs (crops of scikit-learn's sample photos), screenshots (Debian chromium
rendering local documentation and plotly charts), documents (text rendered with
system fonts, some made to look scanned), drawings (system icons, documentation
figures, procedural shapes), blank and gradient images, and noise.
Every item is encoded bytes, so it goes through the same decoding path as an upload.
"""
from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from lungfake.data.synthetic import recoloured_as_he

CHROMIUM = Path("/usr/bin/chromium")
FONT_DIRS = (Path("/usr/share/fonts/truetype"),)
TEXT_SOURCES = (Path("/usr/share/common-licenses"), Path("/usr/share/doc"))
DRAWING_DIRS = (Path("/usr/share/icons"), Path("/usr/share/doc"), Path("/usr/share/tcltk"), Path("/usr/share/info"))
HTML_ROOTS = tuple(Path.home().glob(".rustup/toolchains/*/share/doc/rust/html"))


def _encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def photographs(rng: random.Random, count: int = 60) -> list[tuple[str, bytes]]:
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(p) for p in load_sample_images().images]
    items = [(f"photo_{i}_whole", _encode(p, "JPEG")) for i, p in enumerate(photos)]
    for n in range(count - len(items)):
        photo = photos[n % len(photos)]
        side = int(min(photo.size) * rng.uniform(0.15, 0.9))
        x, y = rng.randint(0, photo.width - side), rng.randint(0, photo.height - side)
        items.append((f"photo_{n % len(photos)}_crop{n}", _encode(photo.crop((x, y, x + side, y + side)), "JPEG")))
    return items


def _fonts() -> list[Path]:
    return sorted(p for d in FONT_DIRS if d.is_dir() for p in d.rglob("*.ttf"))


def _texts(limit: int = 40) -> list[str]:
    texts = []
    for folder in TEXT_SOURCES:
        for path in sorted(folder.rglob("*"))[:4000]:
            if path.is_file() and path.suffix in ("", ".txt", ".md") and 2_000 < path.stat().st_size < 200_000:
                try:
                    texts.append(path.read_text(errors="ignore"))
                except OSError:
                    continue
            if len(texts) >= limit:
                return texts
    return texts or ["Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 200]


def documents(rng: random.Random, count: int = 50) -> list[tuple[str, bytes]]:
    fonts, texts, items = _fonts(), _texts(), []
    for n in range(count):
        width, height = rng.choice([(850, 1100), (1100, 850), (600, 600), (1240, 1754)])
        paper = rng.choice([(255, 255, 255), (250, 248, 240), (235, 235, 235), (255, 253, 208)])
        page = Image.new("RGB", (width, height), paper)
        draw = ImageDraw.Draw(page)
        font = ImageFont.truetype(str(rng.choice(fonts)), rng.randint(11, 28)) if fonts else ImageFont.load_default()
        lines = rng.choice(texts).splitlines()
        start, y = rng.randint(0, max(0, len(lines) - 80)), rng.randint(20, 80)
        ink = rng.choice([(0, 0, 0), (20, 20, 80), (60, 60, 60)])
        for line in lines[start:]:
            draw.text((rng.randint(30, 70), y), line[:120], fill=ink, font=font)
            y += int(font.size * 1.4)
            if y > height - 40:
                break
        if n % 4 == 0:  # a table, as in forms and reports
            for row in range(8):
                draw.rectangle((60, height - 300 + row * 30, width - 60, height - 270 + row * 30), outline=ink)
        if n % 3 == 0:  # a scan: tilted, blurred, speckled
            page = page.rotate(rng.uniform(-3, 3), fillcolor=paper).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
            speckle = np.random.default_rng(n).normal(0, 8, (height, width, 1))
            page = Image.fromarray(np.clip(np.asarray(page) + speckle, 0, 255).astype(np.uint8))
        items.append((f"document_{n}", _encode(page, rng.choice(["PNG", "JPEG"]))))
    return items


def _file_drawings(rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    paths = sorted(p for d in DRAWING_DIRS if d.is_dir() for p in d.rglob("*")
                   if p.suffix.lower() in (".png", ".gif") and p.stat().st_size > 3_000)
    items = []
    for path in rng.sample(paths, min(count, len(paths))):
        try:
            with Image.open(path) as image:
                image = image.convert("RGBA")
                canvas = Image.new("RGB", image.size, (255, 255, 255))
                canvas.paste(image, mask=image.getchannel("A"))
            items.append((f"drawing_file_{path.stem}", _encode(canvas)))
        except OSError:
            continue
    return items


def drawings(rng: random.Random, count: int = 60) -> list[tuple[str, bytes]]:
    items = _file_drawings(rng, count // 2)
    for n in range(count - len(items)):
        background = tuple(rng.randint(0, 255) for _ in range(3)) if n % 3 else (255, 255, 255)
        canvas = Image.new("RGB", (rng.randint(200, 900), rng.randint(200, 900)), background)
        draw = ImageDraw.Draw(canvas)
        for _ in range(rng.randint(3, 30)):
            colour = tuple(rng.randint(0, 255) for _ in range(3))
            box = sorted(rng.randint(0, canvas.width) for _ in range(2)), sorted(rng.randint(0, canvas.height) for _ in range(2))
            shape = (box[0][0], box[1][0], box[0][1], box[1][1])
            kind = rng.choice(["ellipse", "rectangle", "line", "polygon"])
            if kind == "ellipse":
                draw.ellipse(shape, fill=colour if rng.random() < 0.6 else None, outline=colour, width=rng.randint(1, 6))
            elif kind == "rectangle":
                draw.rectangle(shape, fill=colour if rng.random() < 0.6 else None, outline=colour, width=rng.randint(1, 6))
            elif kind == "line":
                draw.line(shape, fill=colour, width=rng.randint(1, 12))
            else:
                draw.polygon([(rng.randint(0, canvas.width), rng.randint(0, canvas.height)) for _ in range(5)], fill=colour)
        items.append((f"drawing_shapes_{n}", _encode(canvas)))
    return items


def blanks(rng: random.Random, count: int = 30) -> list[tuple[str, bytes]]:
    fixed = [(255, 255, 255), (0, 0, 0), (128, 128, 128), (230, 180, 210), (150, 90, 170), (245, 245, 245)]
    items = []
    for n in range(count):
        size = (rng.randint(64, 800), rng.randint(64, 800))
        colour = fixed[n] if n < len(fixed) else tuple(rng.randint(0, 255) for _ in range(3))
        if n % 2 and n >= len(fixed):  # a gradient between two colours
            other = np.array([rng.randint(0, 255) for _ in range(3)])
            ramp = np.linspace(0, 1, size[0])[None, :, None]
            pixels = np.array(colour) * (1 - ramp) + other * ramp
            image = Image.fromarray(np.repeat(pixels, size[1], axis=0).astype(np.uint8))
        else:
            image = Image.new("RGB", size, colour)
        items.append((f"blank_{n}", _encode(image)))
    return items


def noise(rng: random.Random, count: int = 40) -> list[tuple[str, bytes]]:
    items = []
    for n in range(count):
        gen = np.random.default_rng(1000 + n)
        side = rng.choice([64, 224, 512])
        kind = n % 4
        if kind == 0:
            pixels = gen.integers(0, 256, (side, side, 3))
        elif kind == 1:
            pixels = np.repeat(gen.normal(128, 50, (side, side, 1)), 3, axis=2)
        elif kind == 2:
            pixels = np.where(gen.random((side, side, 1)) < 0.5, 0, 255) * np.ones(3)
        else:  # smooth coloured blobs
            coarse = gen.random((side // 16, side // 16, 3)) * 255
            pixels = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC))
        items.append((f"noise_{['uniform', 'gaussian', 'salt_pepper', 'blobs'][kind]}_{n}",
                       _encode(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))))
    return items


def he_coloured_fakes(rng: random.Random, count: int = 40) -> list[tuple[str, bytes]]:
    """The hardest case for a colour check: photographs, documents, drawings and noise in H&E colours."""
    sources = photographs(rng, 12) + documents(rng, 8) + drawings(rng, 10) + noise(rng, 10)
    items = []
    for name, data in rng.sample(sources, min(count, len(sources))):
        with Image.open(io.BytesIO(data)) as image:
            items.append((f"he_coloured_{name}", _encode(Image.fromarray(recoloured_as_he(np.asarray(image.convert("RGB")))))))
    return items


def _chart_html(rng: random.Random, n: int) -> str:
    import plotly.express as px
    import plotly.io as pio

    x = np.arange(30)
    kind = n % 3
    if kind == 0:
        figure = px.line(x=x, y=np.cumsum(np.random.default_rng(n).normal(size=30)), title=f"Series {n}")
    elif kind == 1:
        figure = px.bar(x=list("ABCDEFG"), y=np.random.default_rng(n).random(7), title="Counts")
    else:
        figure = px.imshow(np.random.default_rng(n).random((8, 8)), title="Heatmap")
    return pio.to_html(figure, include_plotlyjs=True, full_html=True)


def screenshots(rng: random.Random, count: int = 40) -> list[tuple[str, bytes]]:
    """Chromium renders local documentation pages and charts; skipped where chromium is absent."""
    if not CHROMIUM.exists():
        return []
    from playwright.sync_api import sync_playwright

    pages = sorted(p for root in HTML_ROOTS for p in root.rglob("*.html") if p.stat().st_size > 5_000)
    chosen = rng.sample(pages, min(count * 2 // 3, len(pages)))
    items = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        for n in range(count):
            width, height = rng.choice([(1280, 800), (1920, 1080), (800, 600), (390, 844)])
            page = browser.new_page(viewport={"width": width, "height": height}, color_scheme=rng.choice(["light", "dark"]))
            try:
                if n < len(chosen):
                    page.goto(chosen[n].as_uri(), wait_until="load", timeout=15_000)
                    page.mouse.wheel(0, rng.randint(0, 3000))
                    name = f"screenshot_doc_{chosen[n].stem}"
                else:
                    page.set_content(_chart_html(rng, n), wait_until="load", timeout=15_000)
                    name = f"screenshot_chart_{n}"
                page.wait_for_timeout(200)
                items.append((name, page.screenshot()))
            except Exception as exc:  # one page failing to render should not stop the set
                print(f"skipped a screenshot: {exc}")
            finally:
                page.close()
        browser.close()
    return items


def build(seed: int = 0) -> dict[str, list[tuple[str, bytes]]]:
    """The whole set by category: name and encoded bytes of each image."""
    rng = random.Random(seed)
    return {
        "photographs": photographs(rng),
        "screenshots": screenshots(rng),
        "documents": documents(rng),
        "drawings": drawings(rng),
        "blank": blanks(rng),
        "noise": noise(rng),
        "H&E-coloured fakes": he_coloured_fakes(rng),
    }
