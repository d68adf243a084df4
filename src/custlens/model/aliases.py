"""Header aliases in Chinese and English: how source column names map onto canonical columns.

Matching normalizes the header (case, width, spaces, underscores, hyphens, units in brackets), so
"User ID", "user_id", "USERID" and "用户ID（系统）" all match the same alias.
"""

from __future__ import annotations

import re
import unicodedata

# canonical column → aliases (before normalization). Shared columns across tables are listed once;
# table-specific overrides come in TABLE_ALIASES.
ALIASES: dict[str, list[str]] = {
    "user_id": ["user_id", "userid", "user id", "uid", "customer_id", "customer id", "customerid", "cust_id",
                "member_id", "memberid", "client_id", "buyer_id", "用户id", "用户编号", "客户id", "客户编号",
                "客户号", "会员id", "会员编号", "会员号", "买家id", "顾客id", "用户标识", "userId"],
    "anonymous_id": ["anonymous_id", "anonymousid", "anon_id", "device_id", "deviceid", "cookie_id", "匿名id",
                     "设备id", "设备号", "访客id"],
    "name": ["name", "full_name", "fullname", "customer_name", "user_name", "username", "姓名", "客户姓名",
             "用户姓名", "会员姓名", "名字", "联系人"],
    "gender": ["gender", "sex", "性别"],
    "birth_date": ["birth_date", "birthday", "birthdate", "date_of_birth", "dob", "出生日期", "生日"],
    "phone": ["phone", "mobile", "mobile_phone", "cellphone", "cell", "phone_number", "tel", "telephone",
              "手机号", "手机", "手机号码", "电话", "电话号码", "联系电话", "联系方式", "移动电话"],
    "email": ["email", "e-mail", "mail", "email_address", "邮箱", "电子邮箱", "电子邮件", "邮件地址"],
    "id_number": ["id_number", "id_card", "idcard", "id_no", "national_id", "identity_number", "身份证号",
                  "身份证", "身份证号码", "证件号", "证件号码"],
    "address": ["address", "addr", "street_address", "detailed_address", "地址", "详细地址", "收货地址",
                "联系地址", "住址", "家庭住址"],
    "province": ["province", "state", "省份", "省", "所在省份"],
    "city": ["city", "城市", "市", "所在城市"],
    "region": ["region", "area", "地区", "区域", "所在地区", "省市"],
    "register_time": ["register_time", "registration_time", "register_date", "signup_time", "signup_date",
                      "created_at", "join_date", "注册时间", "注册日期", "入会时间", "开卡时间", "注册日"],
    "member_level": ["member_level", "level", "tier", "membership", "membership_level", "vip_level",
                     "会员等级", "等级", "会员级别", "客户等级", "vip等级"],
    "acquisition_channel": ["acquisition_channel", "source_channel", "signup_channel", "register_channel",
                            "获客渠道", "注册渠道", "来源渠道", "客户来源"],
    "update_time": ["update_time", "updated_at", "last_modified", "modified_time", "更新时间", "修改时间",
                    "最后更新时间"],
    "event_id": ["event_id", "eventid", "message_id", "messageid", "log_id", "事件id", "日志id", "行为id"],
    "event": ["event", "event_name", "event_type", "action", "behavior", "behaviour", "行为类型", "事件",
              "事件名", "事件类型", "行为", "操作类型", "用户行为"],
    "event_time": ["event_time", "timestamp", "ts", "time", "occurred_at", "行为时间", "事件时间", "发生时间",
                   "时间", "访问时间", "操作时间"],
    "session_id": ["session_id", "sessionid", "session", "会话id", "会话"],
    "product_id": ["product_id", "productid", "item_id", "itemid", "sku", "sku_id", "goods_id", "商品id",
                   "商品编号", "产品id", "产品编号", "货号"],
    "duration_s": ["duration_s", "duration", "stay_time", "dwell_time", "time_on_page", "停留时长",
                   "停留时间", "浏览时长", "时长", "时长秒"],
    "channel": ["channel", "traffic_source", "utm_source", "source", "渠道", "来源", "流量来源", "渠道来源",
                "销售渠道", "投放渠道"],
    "platform": ["platform", "device_type", "terminal", "client", "平台", "终端", "设备类型", "端"],
    "ip": ["ip", "ip_address", "client_ip", "ip地址"],
    "properties": ["properties", "props", "attributes", "属性", "事件属性"],
    "order_id": ["order_id", "orderid", "order_no", "order_number", "订单id", "订单号", "订单编号"],
    "order_time": ["order_time", "order_date", "purchase_time", "purchase_date", "paid_at", "下单时间",
                   "购买时间", "下单日期", "订单时间", "支付时间", "成交时间", "购买日期"],
    "amount": ["amount", "order_amount", "total", "total_amount", "paid_amount", "revenue", "sales",
               "payment", "gmv", "订单金额", "实付金额", "金额", "支付金额", "成交金额", "实付款", "销售额",
               "消费金额", "付款金额"],
    "status": ["status", "order_status", "state_code", "订单状态", "状态", "交易状态"],
    "payment_method": ["payment_method", "pay_method", "payment_type", "支付方式", "付款方式"],
    "discount": ["discount", "discount_amount", "coupon", "优惠", "优惠金额", "折扣", "折扣金额"],
    "line": ["line", "line_no", "line_number", "item_no", "行号", "明细序号", "序号"],
    "category": ["category", "product_category", "cat", "category_name", "类目", "品类", "商品类目",
                 "分类", "商品分类", "类别", "问题类型", "工单类型"],
    "quantity": ["quantity", "qty", "count", "units", "数量", "购买数量", "件数"],
    "unit_price": ["unit_price", "item_price", "单价", "商品单价"],
    "price": ["price", "list_price", "价格", "售价", "标价"],
    "ticket_id": ["ticket_id", "ticketid", "case_id", "工单id", "工单号", "工单编号"],
    "created_time": ["created_time", "create_time", "opened_at", "created", "创建时间", "提交时间",
                     "受理时间", "工单创建时间"],
    "first_response_time": ["first_response_time", "first_reply_time", "responded_at", "首次响应时间",
                            "首次回复时间", "响应时间"],
    "resolved_time": ["resolved_time", "resolve_time", "closed_at", "resolved_at", "solved_at", "解决时间",
                      "关闭时间", "完结时间"],
    "satisfaction": ["satisfaction", "csat", "satisfaction_score", "满意度", "满意度评分", "满意度得分",
                     "评分满意度"],
    "text": ["text", "content", "description", "comment", "message", "body", "内容", "描述", "问题描述",
             "评论", "评价内容", "文本", "留言", "反馈内容"],
    "source": ["source", "feedback_source", "review_source", "反馈来源", "评价来源", "来源"],
    "feedback_id": ["feedback_id", "review_id", "survey_id", "反馈id", "评价id", "评论id", "问卷id"],
    "time": ["time", "review_time", "feedback_time", "created_at", "评价时间", "反馈时间", "时间"],
    "rating": ["rating", "score", "stars", "star", "评分", "打分", "星级", "评价分"],
    "date": ["date", "day", "stat_date", "日期", "统计日期", "投放日期"],
    "campaign": ["campaign", "campaign_name", "utm_campaign", "活动", "活动名称", "推广计划", "计划名称"],
    "impressions": ["impressions", "impression", "views", "曝光", "曝光量", "展现量", "展示量"],
    "uv": ["uv", "visitors", "unique_visitors", "访客数", "独立访客"],
    "clicks": ["clicks", "click", "点击", "点击量", "点击数"],
    "cost": ["cost", "spend", "ad_spend", "花费", "消耗", "成本", "投放花费", "费用"],
}

# Columns that only make sense in some tables; an alias for a column the table lacks is ignored.
_FULLWIDTH = str.maketrans({"（": "(", "）": ")", "【": "[", "】": "]"})


def normalize_header(header: str) -> str:
    """Fold a header for alias matching: NFKC, lower case, drop bracketed units and separators."""
    h = unicodedata.normalize("NFKC", str(header)).translate(_FULLWIDTH).strip().lower()
    h = re.sub(r"[\(\[].*?[\)\]]", "", h)  # 金额(元) → 金额
    h = re.sub(r"[\s_\-\.:/]+", "", h)
    return h


_INDEX: dict[str, list[str]] = {}
for _canon, _aliases in ALIASES.items():
    for _a in [_canon, *_aliases]:
        _INDEX.setdefault(normalize_header(_a), [])
        if _canon not in _INDEX[normalize_header(_a)]:
            _INDEX[normalize_header(_a)].append(_canon)


def match_column(header: str, table_columns: list[str] | tuple[str, ...]) -> str | None:
    """The canonical column of `table_columns` that `header` names, or None if it is not an alias."""
    candidates = _INDEX.get(normalize_header(header), [])
    for c in candidates:
        if c in table_columns:
            return c
        # a "region" header feeds province/city through standardization
        if c == "region" and "province" in table_columns:
            return "region"
    return None
