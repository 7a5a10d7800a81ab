"""English vocabularies of the planted interest topics.

Each topic owns a set of words that no other topic uses, so a user's interests
and an item's topic can be read off their text. Generic words are shared by
every topic and carry no topic signal; quality words hint at an item's latent
quality (see generator.py).
"""

TOPICS: dict[str, list[str]] = {
    "travel": ["flight", "hotel", "passport", "luggage", "beach", "resort", "itinerary",
               "cruise", "airport", "visa", "backpack", "souvenir", "island", "tour",
               "hostel", "sightseeing", "ferry", "vacation"],
    "food": ["pizza", "burger", "noodle", "sushi", "dumpling", "barbecue", "salad",
             "sandwich", "taco", "bakery", "dessert", "pastry", "curry", "steak", "buffet",
             "snack", "takeaway", "ramen"],
    "fitness": ["gym", "workout", "treadmill", "dumbbell", "yoga", "pilates", "protein",
                "stretching", "cardio", "squat", "kettlebell", "trainer", "marathon",
                "sneakers", "plank", "abs", "barbell", "sweat"],
    "finance": ["savings", "deposit", "interest", "loan", "mortgage", "budget", "credit",
                "dividend", "portfolio", "pension", "bond", "fund", "wealth", "tax",
                "invoice", "banking", "annuity", "ledger"],
    "gaming": ["console", "joystick", "esports", "quest", "arcade", "controller",
               "multiplayer", "level", "boss", "headset", "leaderboard", "speedrun",
               "dungeon", "pixel", "respawn", "loot", "guild", "tournament"],
    "music": ["guitar", "piano", "concert", "playlist", "album", "vinyl", "drummer",
              "melody", "chorus", "violin", "orchestra", "karaoke", "headphones", "jazz",
              "lyrics", "festival", "band", "singer"],
    "movies": ["cinema", "film", "trailer", "premiere", "director", "actor", "blockbuster",
               "sequel", "popcorn", "screenplay", "documentary", "thriller", "comedy",
               "animation", "boxoffice", "streaming", "series", "episode"],
    "books": ["novel", "author", "paperback", "library", "chapter", "bestseller", "poetry",
              "bookstore", "fiction", "memoir", "bookmark", "biography", "ebook",
              "publisher", "reading", "literature", "manuscript", "anthology"],
    "pets": ["puppy", "kitten", "leash", "aquarium", "hamster", "veterinarian", "grooming",
             "kibble", "parrot", "collar", "litter", "terrier", "goldfish", "doghouse",
             "catnip", "adoption", "rabbit", "petshop"],
    "gardening": ["seeds", "compost", "tulip", "fertilizer", "greenhouse", "shovel", "hose",
                  "orchid", "lawn", "pruning", "succulent", "planter", "mulch", "seedling",
                  "bonsai", "hedge", "watering", "harvest"],
    "cars": ["sedan", "engine", "tire", "dealership", "gasoline", "hybrid", "garage",
             "windshield", "brake", "carwash", "motor", "suv", "horsepower", "parking",
             "mechanic", "battery", "transmission", "roadtrip"],
    "fashion": ["dress", "jacket", "denim", "handbag", "boutique", "runway", "scarf", "heels",
                "blazer", "sweater", "jeans", "tailor", "wardrobe", "outfit", "necklace",
                "sunglasses", "skirt", "coat"],
    "beauty": ["lipstick", "skincare", "perfume", "mascara", "serum", "moisturizer",
               "shampoo", "manicure", "salon", "sunscreen", "cosmetics", "foundation",
               "eyeliner", "facial", "fragrance", "haircut", "lotion", "blush"],
    "baby": ["diaper", "stroller", "pacifier", "crib", "toddler", "nursery", "formula",
             "rattle", "babysitter", "onesie", "teether", "playpen", "bib", "lullaby",
             "newborn", "carrier", "highchair", "wipes"],
    "home": ["sofa", "curtain", "lamp", "carpet", "wallpaper", "cushion", "mattress",
             "bookshelf", "furniture", "kitchenware", "blender", "vacuum", "decor", "pillow",
             "rug", "cupboard", "chandelier", "doormat"],
    "electronics": ["smartphone", "laptop", "tablet", "charger", "earbuds", "smartwatch",
                    "router", "keyboard", "monitor", "processor", "bluetooth", "usb",
                    "speaker", "drone", "gadget", "printer", "webcam", "television"],
    "photography": ["lens", "tripod", "shutter", "aperture", "portrait", "snapshot",
                    "darkroom", "flash", "zoom", "exposure", "photobook", "camcorder",
                    "selfie", "landscape", "mirrorless", "polaroid", "filter", "studio"],
    "football": ["goal", "striker", "stadium", "penalty", "referee", "midfielder", "league",
                 "jersey", "kickoff", "offside", "goalkeeper", "derby", "cleats", "worldcup",
                 "transfer", "manager", "pitch", "halftime"],
    "basketball": ["dunk", "hoop", "rebound", "playoff", "dribble", "courtside", "slamdunk",
                   "buzzer", "threepointer", "jumpshot", "backboard", "mvp", "allstar",
                   "layup", "freethrow", "draft", "tipoff", "timeout"],
    "coffee": ["espresso", "latte", "cappuccino", "barista", "beans", "grinder", "roastery",
               "mocha", "americano", "frappe", "brew", "mug", "caffeine", "decaf",
               "pourover", "macchiato", "cafe", "arabica"],
    "wine": ["vineyard", "merlot", "chardonnay", "sommelier", "cellar", "corkscrew",
             "winery", "tasting", "vintage", "cabernet", "rose", "champagne", "decanter",
             "sauvignon", "pinot", "riesling", "prosecco", "bottle"],
    "hiking": ["trail", "summit", "tent", "campfire", "compass", "canyon", "backpacking",
               "wilderness", "boots", "waterfall", "ridge", "trekking", "sleepingbag",
               "lantern", "forest", "glacier", "basecamp", "switchback"],
    "cycling": ["bicycle", "helmet", "pedal", "peloton", "derailleur", "saddle",
                "mountainbike", "spokes", "chainring", "velodrome", "cyclist", "handlebar",
                "criterium", "gravelbike", "bikelane", "tandem", "sprocket", "bidon"],
    "insurance": ["policy", "claim", "coverage", "deductible", "underwriter", "actuary",
                  "liability", "insurer", "beneficiary", "accident", "copay", "indemnity",
                  "reinsurance", "renewal", "broker", "rider", "payout", "insured"],
    "education": ["course", "tutor", "exam", "homework", "scholarship", "lecture",
                  "classroom", "diploma", "semester", "textbook", "quiz", "curriculum",
                  "campus", "enrollment", "graduation", "tuition", "seminar", "webinar"],
    "health": ["clinic", "doctor", "vaccine", "pharmacy", "checkup", "vitamin", "therapy",
               "dentist", "hospital", "prescription", "symptom", "nurse", "wellness",
               "bloodtest", "allergy", "sleep", "nutrition", "meditation"],
    "realestate": ["apartment", "condo", "landlord", "tenant", "lease", "realtor", "rent",
                   "downpayment", "listing", "duplex", "loft", "villa", "townhouse",
                   "openhouse", "property", "escrow", "bungalow", "penthouse"],
    "crypto": ["bitcoin", "blockchain", "wallet", "token", "ethereum", "mining", "altcoin",
               "exchange", "stablecoin", "nft", "defi", "hashrate", "satoshi", "airdrop",
               "staking", "smartcontract", "halving", "coldwallet"],
    "art": ["painting", "canvas", "gallery", "sculpture", "easel", "watercolor", "sketch",
            "museum", "exhibition", "brushes", "acrylic", "mural", "curator", "pottery",
            "charcoal", "ceramics", "collage", "artist"],
    "cooking": ["recipe", "oven", "skillet", "spatula", "apron", "knife", "marinade",
                "baking", "cookbook", "whisk", "saucepan", "grill", "seasoning", "chef",
                "simmer", "roast", "dough", "ingredient"],
}

TOPIC_NAMES: list[str] = list(TOPICS)

GENERIC: list[str] = ["new", "best", "top", "daily", "weekly", "deal", "offer", "sale",
                      "discount", "guide", "tips", "today", "exclusive", "free", "plus",
                      "pro", "classic", "special", "limited", "online", "review", "bundle",
                      "member", "bonus", "coupon", "voucher", "smart", "easy", "quick",
                      "fresh"]

# Shown more often in titles of items whose latent quality is high (resp. low).
GOOD_WORDS: list[str] = ["official", "certified", "award winning", "premium"]
BAD_WORDS: list[str] = ["clearance", "generic", "refurbished", "unbranded"]


def _check() -> None:
    words = [w for ws in TOPICS.values() for w in ws]
    assert len(words) == len(set(words)), "topic vocabularies must not share words"
    assert not set(words) & set(GENERIC + GOOD_WORDS + BAD_WORDS)


_check()
