"""Search benchmark queries: what a township cadre or deputy would type, by kind."""

from __future__ import annotations

# (kind, query). Kinds: question (a natural question), word (one term), sub (part of a word, as
# people type before they finish or remember a term), law (a law's short name), mixed (Chinese
# with digits or Latin letters), long (a pasted sentence).
QUERIES: tuple[tuple[str, str], ...] = (
    ("question", "主席团闭会期间做什么"),
    ("question", "代表建议多久答复"),
    ("question", "乡镇人大一年开几次会"),
    ("question", "人大代表可以被罢免吗"),
    ("question", "怎么提出议案"),
    ("question", "罢免代表需要多少人联名"),
    ("question", "乡镇人大主席能不能兼任政府职务"),
    ("question", "选民怎样监督代表"),
    ("question", "代表视察要不要提前通知"),
    ("question", "闭会期间代表怎么开展活动"),
    ("question", "乡镇预算由谁审查批准"),
    ("question", "代表资格什么时候终止"),
    ("question", "开会期间代表能被逮捕吗"),
    ("question", "人大怎么监督政府工作"),
    ("question", "村委会选举怎么组织"),
    ("word", "预算调整"),
    ("word", "质询案"),
    ("word", "罢免"),
    ("word", "代表资格审查"),
    ("word", "履职学习"),
    ("word", "执法检查"),
    ("word", "专题询问"),
    ("word", "选民登记"),
    ("word", "食品安全"),
    ("word", "土地承包经营权"),
    ("sub", "会期"),
    ("sub", "团成员"),
    ("sub", "常委"),
    ("sub", "代表小"),
    ("sub", "罢免案"),
    ("law", "代表法"),
    ("law", "地方组织法"),
    ("law", "选举法"),
    ("law", "监督法"),
    ("law", "预算法"),
    ("law", "环境保护法"),
    ("law", "村民委员会组织法"),
    ("mixed", "代表法第四十七条"),
    ("mixed", "2025年代表法修改"),
    ("mixed", "PM2.5 大气污染防治"),
    ("mixed", "12345热线"),
    ("mixed", "GDP统计"),
    ("long", "乡镇人民代表大会主席团在本级人民代表大会闭会期间每年选择若干关系本地区群众切身利益的问题"),
)

# Ranking check on the 2,000-law corpus: for these queries a document whose "title › heading"
# contains the text on the right must be among kb's first three hits (the law or chapter that
# answers them; laws not in the first 2,000, such as 预算法 and 选举法, are not listed).
EXPECTED_TOP3: dict[str, str] = {
    "代表法": "全国人民代表大会和地方各级人民代表大会代表法",
    "监督法": "各级人民代表大会常务委员会监督法",
    "环境保护法": "中华人民共和国环境保护法",
    "村民委员会组织法": "村民委员会组织法",
    "闭会期间代表怎么开展活动": "闭会期间的活动",
    "选民怎样监督代表": "对代表的监督",
    "代表资格什么时候终止": "对代表的监督",
    "怎么提出议案": "议案的提出",
    "预算调整": "预算调整",
    "质询案": "质询",
    "罢免案": "罢免",
    "选民登记": "选民登记",
    "食品安全": "食品安全",
    "PM2.5 大气污染防治": "大气污染防治条例",
    "12345热线": "12345",
}
