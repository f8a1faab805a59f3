"""The built-in word list of the word tasks (letter counting, spelling backward, word sorting).

Common English words, lower-case letters only, 3 to 12 letters, each listed once; written for
textgym, no download.
"""

from __future__ import annotations

_TEXT = """
    ant ape arm art ash bag bat bed bee box boy bus cab cap car cat cow cup cut dam den dog
    dot ear egg elf elk elm end eye fan fig fin fly fog fox fun gem gum gym hat hay hen hip
    hog hut ice ink jam jar jaw jet jog joy key kid kit lab lap law leg lid lip log map mat
    mix mop mud mug net nut oak oar owl pan paw pea pen pet pie pig pin pit pot pub rag ram
    rat ray rib rim rod rug sad saw sea sky son sun tab tap tea tie tin toe top toy tub van
    vet wax web wig yak yam zip zoo
    acid apex atom aunt baby bake ball band bank barn bark bell belt bird boat bold bone
    book boot bowl bulb cake calm camp card cart cave chef chin city clay clip coal coat
    code coin cold cook corn crab crew crow cube dart dawn deer desk dish dive door dove
    drum duck dust echo face farm fern fire fish flag frog gate gift girl goat gold golf
    hand harp hawk heat herb hill hive hook horn iron jazz kite knee knot lake lamb lamp
    leaf lion loaf lock luck mail mask meal milk mint moon moth nail nest note oven palm
    park pear pipe plum pond pony rain rice ring road rock roof rope rose ruby sail salt
    sand seed ship shoe silk sink snow soap sock sofa soup star swan tent tide tree tuna
    vase vest wall wave well wind wolf wood worm yard yarn zero
    acorn adult amber angle apple apron arrow badge bagel baker beach berry bench bison
    blade blank bloom board brain bread brick broom brush cabin camel candy canoe chair
    chalk charm chess chest chili cider cliff clock cloud coral couch crane crown daisy
    dance dream drill eagle earth fairy feast fence field flame flute frost fruit ghost
    giant glass globe grape grass guest horse hotel house jelly jewel juice koala label
    lemon light llama lunch mango maple melon money motor mouse music night ocean olive
    onion otter panda paper peach pearl piano pilot pizza plant plate queen quilt radio
    raven river robin salad scarf sheep shelf shell skate skirt smile snake spoon stone
    storm sugar sword table tiger toast towel tower train truck tulip uncle video wagon
    whale wheat wheel witch zebra
    anchor animal autumn banana basket beaver bottle bridge bubble bucket butter button
    candle carpet carrot castle cattle cereal cherry circle closet cobweb cookie copper
    cotton cradle crayon dancer desert dinner doctor dragon drawer falcon farmer flower
    forest fossil garden garlic ginger glider guitar hammer harbor helmet hockey honest
    insect island jacket jungle kettle kitten ladder lizard locket magnet marble meadow
    mirror monkey muffin museum napkin needle orange oyster palace parrot pepper pickle
    pillow planet pocket potato puzzle rabbit racket ribbon rocket saddle sailor salmon
    silver singer spider spring squash stairs statue summer tennis ticket tomato tunnel
    turkey turtle valley velvet violin walrus window winter wizard yellow
    address balloon bandage battery bicycle biscuit blanket cabbage captain cartoon
    ceiling chicken compass cottage cricket crystal cupcake diamond dolphin feather
    fishing freedom gallery giraffe harvest hedgehog holiday iceberg jasmine kitchen
    lantern leopard library lobster machine mammoth mansion morning mustard
    necklace octopus ostrich painter panther peacock pelican penguin picture pilgrim
    popcorn printer pumpkin pyramid rainbow sandals sausage seaweed sparrow
    station student sunrise teacher thunder trumpet unicorn vampire volcano weather
    whisper
    aardvark airplane alphabet anteater avocado backpack baseball blizzard blueberry
    building calendar cardigan ceremony champion chipmunk chocolate cinnamon crocodile
    cucumber dinosaur doorbell dumpling elephant envelope festival firework flamingo
    football goldfish grateful hamburger handbag hospital jellyfish kangaroo
    keyboard labyrinth language lavender lemonade lighthouse magazine marathon mosquito
    mountain mushroom notebook umbrella painting pancake parachute peppermint pineapple
    platypus porcupine question raincoat raspberry reindeer sandwich scorpion sculpture
    shoulder skeleton snowball spaghetti squirrel strawberry sunflower surprise telephone
    tortoise treasure triangle vacation vanilla vegetable wardrobe waterfall whistle
    woodpecker
    adventure afternoon apartment astronaut blackboard butterfly caterpillar chameleon
    classroom crossroad dandelion detective direction education elevator everything
    fireplace generation grasshopper helicopter hurricane invention kindergarten
    landscape lightning marshmallow microphone motorcycle nightingale orchestra
    photograph playground porridge restaurant scarecrow screwdriver snowflake spaceship
    submarine supermarket tambourine television thermometer toothbrush tournament
    underground wheelbarrow wonderful xylophone
"""

WORDS: tuple[str, ...] = tuple(_TEXT.split())
"""The words, roughly grouped by length (the tasks filter by length and sample)."""
