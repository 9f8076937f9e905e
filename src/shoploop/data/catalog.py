"""The simulated shop's vocabulary: categories, product types, attributes, brands and synonyms.

Kept apart from the simulator so that query generation, relevance grading and item text all
draw from one source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COLOURS = ["black", "white", "red", "blue", "green", "grey", "pink", "navy", "brown", "yellow"]


@dataclass(frozen=True)
class ProductType:
    name: str
    category_path: str
    synonyms: tuple[str, ...]
    materials: tuple[str, ...]
    sizes: tuple[str, ...]
    median_price: float
    # Types a shopper buys alongside this one: ESCI "complement".
    complements: tuple[str, ...] = field(default_factory=tuple)


TYPES: tuple[ProductType, ...] = (
    ProductType("frying pan", "Home & Kitchen > Cookware", ("skillet", "fry pan"), ("cast iron", "stainless steel", "nonstick aluminium"), ("20cm", "24cm", "28cm"), 35, ("spatula", "chef knife")),
    ProductType("saucepan", "Home & Kitchen > Cookware", ("sauce pot", "pot"), ("stainless steel", "copper", "nonstick aluminium"), ("1.5l", "2l", "3l"), 40, ("spatula",)),
    ProductType("spatula", "Home & Kitchen > Utensils", ("turner", "flipper"), ("silicone", "wood", "stainless steel"), ("small", "large"), 9, ("frying pan",)),
    ProductType("chef knife", "Home & Kitchen > Utensils", ("kitchen knife", "cooks knife"), ("stainless steel", "carbon steel", "ceramic"), ("15cm", "20cm"), 45, ("cutting board",)),
    ProductType("cutting board", "Home & Kitchen > Utensils", ("chopping board", "chopping block"), ("wood", "bamboo", "plastic"), ("small", "medium", "large"), 22, ("chef knife",)),
    ProductType("coffee mug", "Home & Kitchen > Drinkware", ("mug", "coffee cup"), ("ceramic", "porcelain", "stainless steel"), ("300ml", "400ml"), 12, ("coffee grinder",)),
    ProductType("coffee grinder", "Home & Kitchen > Appliances", ("coffee mill", "bean grinder"), ("stainless steel", "plastic"), ("compact", "standard"), 55, ("coffee mug",)),
    ProductType("headphones", "Electronics > Audio", ("headset", "over ear headphones"), ("plastic", "aluminium", "leather"), ("standard",), 80, ("headphone stand",)),
    ProductType("earbuds", "Electronics > Audio", ("wireless earphones", "in ear headphones"), ("plastic",), ("standard",), 60, ("phone case",)),
    ProductType("bluetooth speaker", "Electronics > Audio", ("wireless speaker", "portable speaker"), ("plastic", "fabric", "aluminium"), ("mini", "standard", "large"), 70, ()),
    ProductType("headphone stand", "Electronics > Accessories", ("headset holder", "headphone hanger"), ("wood", "aluminium", "plastic"), ("standard",), 20, ("headphones",)),
    ProductType("phone case", "Electronics > Accessories", ("phone cover", "smartphone case"), ("silicone", "leather", "plastic"), ("6.1in", "6.7in"), 15, ("earbuds",)),
    ProductType("running shoes", "Clothing > Shoes", ("sneakers", "trainers", "jogging shoes"), ("mesh", "knit", "leather"), ("uk 6", "uk 8", "uk 10"), 90, ("running socks",)),
    ProductType("boots", "Clothing > Shoes", ("ankle boots", "hiking boots"), ("leather", "suede", "rubber"), ("uk 6", "uk 8", "uk 10"), 110, ()),
    ProductType("running socks", "Clothing > Accessories", ("sport socks", "athletic socks"), ("cotton", "wool", "polyester"), ("s", "m", "l"), 10, ("running shoes",)),
    ProductType("t-shirt", "Clothing > Tops", ("tee", "tshirt"), ("cotton", "linen", "polyester"), ("s", "m", "l", "xl"), 18, ()),
    ProductType("hoodie", "Clothing > Tops", ("sweatshirt", "hooded jumper"), ("cotton", "fleece", "polyester"), ("s", "m", "l", "xl"), 45, ()),
    ProductType("rain jacket", "Clothing > Outerwear", ("raincoat", "waterproof jacket"), ("nylon", "polyester", "gore-tex"), ("s", "m", "l", "xl"), 95, ()),
    ProductType("notebook", "Office Products > Paper", ("journal", "notepad"), ("paper", "recycled paper", "leather"), ("a5", "a4"), 9, ("gel pen",)),
    ProductType("gel pen", "Office Products > Writing", ("rollerball pen", "ink pen"), ("plastic", "metal"), ("0.5mm", "0.7mm"), 6, ("notebook",)),
    ProductType("desk lamp", "Office Products > Desk", ("table lamp", "reading lamp"), ("metal", "plastic", "wood"), ("standard",), 40, ()),
    ProductType("office chair", "Office Products > Furniture", ("desk chair", "ergonomic chair"), ("mesh", "leather", "fabric"), ("standard",), 180, ()),
    ProductType("yoga mat", "Sports & Outdoors > Fitness", ("exercise mat", "fitness mat"), ("rubber", "tpe", "cork"), ("4mm", "6mm"), 30, ("water bottle",)),
    ProductType("water bottle", "Sports & Outdoors > Hydration", ("drinks bottle", "flask"), ("stainless steel", "plastic", "glass"), ("500ml", "750ml", "1l"), 20, ("yoga mat",)),
    ProductType("backpack", "Sports & Outdoors > Bags", ("rucksack", "daypack"), ("nylon", "canvas", "polyester"), ("20l", "30l"), 60, ("water bottle",)),
    ProductType("tent", "Sports & Outdoors > Camping", ("camping tent", "dome tent"), ("nylon", "polyester", "canvas"), ("2 person", "4 person"), 150, ("sleeping bag",)),
    ProductType("sleeping bag", "Sports & Outdoors > Camping", ("sleep sack", "camping bag"), ("down", "synthetic"), ("regular", "long"), 85, ("tent",)),
    ProductType("shampoo", "Beauty > Hair", ("hair wash", "hair shampoo"), ("argan oil", "tea tree", "coconut"), ("250ml", "500ml"), 9, ("conditioner",)),
    ProductType("conditioner", "Beauty > Hair", ("hair conditioner", "detangler"), ("argan oil", "tea tree", "coconut"), ("250ml", "500ml"), 9, ("shampoo",)),
    ProductType("face cream", "Beauty > Skin", ("moisturiser", "face moisturizer"), ("hyaluronic", "vitamin c", "aloe"), ("50ml",), 25, ()),
)

TYPE_BY_NAME = {t.name: t for t in TYPES}

BRANDS = {
    "Home & Kitchen": ["Cookwell", "Panora", "Hearthly", "Ferro", "Kitchora", "Olivo", "Brasa"],
    "Electronics": ["Sonix", "Auralis", "Voltra", "Beatbox", "Nimbus", "Pulse"],
    "Clothing": ["Stride", "Northpeak", "Urbane", "Kestrel", "Lumo", "Fable"],
    "Office Products": ["Papyra", "Inkwell", "Deskmate", "Ledger", "Quillo"],
    "Sports & Outdoors": ["Trailhead", "Summit", "Aqualite", "Basecamp", "Zenflow"],
    "Beauty": ["Glowra", "Purely", "Verdana", "Silkara", "Bloom"],
}

ADJECTIVES = ["classic", "premium", "lightweight", "durable", "essential", "pro", "everyday", "compact", "deluxe", "eco"]
FEATURES = [
    "easy to clean", "built to last", "great value", "gift ready", "award winning design",
    "comfortable grip", "travel friendly", "two year warranty", "ethically made", "best seller",
]
VAGUE_WORDS = ["best", "cheap", "good", "nice", "quality", "new"]
# Tone of review text follows its star rating.
REVIEW_PHRASES = {
    1: ["broke after a week", "very disappointed", "cheap and flimsy", "would not buy again"],
    2: ["not as described", "quality is poor", "expected better", "returned it"],
    3: ["it is okay", "does the job", "average quality", "fine for the price"],
    4: ["works well", "good value", "happy with it", "nice quality"],
    5: ["absolutely love it", "excellent quality", "exceeded expectations", "perfect, buy it"],
}


def top_category(category_path: str) -> str:
    return category_path.split(" > ")[0]
